"""The migrations produce exactly the schema the code declares, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from customer_segments.store.migrate import head_revision
from customer_segments.store.store import Store
from customer_segments.store.tables import POSTGRESQL_ONLY_INDEXES, metadata


async def test_migrated_schema_matches_tables(store: Store) -> None:
    def differences(connection: Any) -> list[Any]:
        postgresql = connection.dialect.name == "postgresql"

        def include(_object: Any, name: str | None, type_: str, *_: Any) -> bool:
            return postgresql or type_ != "index" or name not in POSTGRESQL_ONLY_INDEXES

        context = MigrationContext.configure(connection, opts={"include_object": include})
        return list(compare_metadata(context, metadata))

    async with store.database.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
        revision = await connection.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision()
        )
    assert revision == head_revision()


async def test_tenant_leads_every_key_and_index(store: Store) -> None:
    def keys(connection: Any) -> list[tuple[str, list[str]]]:
        inspector = inspect(connection)
        found = []
        for table in metadata.tables:
            found.append((table, inspector.get_pk_constraint(table)["constrained_columns"]))
            found += [(table, index["column_names"]) for index in inspector.get_indexes(table)]
        return found

    async with store.database.engine.connect() as connection:
        for table, columns in await connection.run_sync(keys):
            assert columns[0] == "tenant", f"{table}: {columns}"
