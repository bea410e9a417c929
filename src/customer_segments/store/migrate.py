"""Schema migrations (Alembic), runnable from inside the service's event loop.

Every start checks the schema, and most find it at head: that check reads alembic_version
with a plain query and compares it with HEAD_REVISION, so that a start imports Alembic (and
Mako, and the migration scripts) only when there is something to migrate. Importing them cost
each start about 0.1 s of CPU, and loading the script directory as much again in every worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from customer_segments.store.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The revision of the newest script in migrations/versions; a unit test keeps it in step.
HEAD_REVISION = "0006"
# Serializes concurrent `migrate` runs (several replicas starting at once) on PostgreSQL.
_ADVISORY_LOCK_ID = 0x5E65_C0DE


def alembic_config() -> Config:
    from alembic.config import Config  # here: only a migration needs Alembic (see above)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(database: Database) -> None:
    if await current_revision(database) == HEAD_REVISION:
        return
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade)


class SchemaNotCurrent(RuntimeError):
    pass


async def current_revision(database: Database) -> str | None:
    """What alembic_version says (None for a database never migrated), as Alembic reads it."""
    async with database.engine.connect() as connection:
        if not await connection.run_sync(
            lambda sync: sync.dialect.has_table(sync, "alembic_version")
        ):
            return None
        rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
        found = sorted(rows.scalars())
    # Several rows (branches merged by hand) are never equal to the one head: say them all.
    return ", ".join(found) or None


async def require_current_schema(database: Database) -> None:
    """Refuses to serve on a database whose schema is not the one this code expects."""
    current = await current_revision(database)
    if current != HEAD_REVISION:
        raise SchemaNotCurrent(
            f"the database schema is at revision {current or 'none'}, this service needs "
            f"{HEAD_REVISION}: run `customer-segments migrate --database-url URL` first"
        )
