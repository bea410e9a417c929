"""A start on a schema at head knows it without Alembic: HEAD_REVISION stays in step with the
migrations, and such a start imports no Alembic at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from customer_segments.store.migrate import HEAD_REVISION, alembic_config

# Opens the database as a start does (migrating if needed), then says whether Alembic came in.
_START = """
import asyncio, sys
from customer_segments.store.database import Database
from customer_segments.store.migrate import require_current_schema, upgrade_to_head

async def start(url):
    database = Database(url)
    await upgrade_to_head(database)
    await require_current_schema(database)
    await database.dispose()

asyncio.run(start(sys.argv[1]))
print("alembic" in sys.modules, "mako" in sys.modules)
"""


def test_head_revision_is_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


def test_a_start_on_a_schema_at_head_imports_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    def start() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _START, url], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert start() == "True True"  # the first start migrates
    assert start() == "False False"
