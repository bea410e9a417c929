"""Schema migrations (Alembic), runnable from inside the service's event loop."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from customer_segments.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Serializes concurrent `migrate` runs (several replicas starting at once) on PostgreSQL.
_ADVISORY_LOCK_ID = 0x5E65_C0DE


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade)


class SchemaNotCurrent(RuntimeError):
    pass


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


async def require_current_schema(database: Database) -> None:
    """Refuses to serve on a database whose schema is not the one this code expects."""
    async with database.engine.connect() as connection:
        current = await connection.run_sync(_current_revision)
    head = head_revision()
    if current != head:
        raise SchemaNotCurrent(
            f"the database schema is at revision {current or 'none'}, this service needs {head}: "
            "run `customer-segments migrate --database-url URL` first"
        )
