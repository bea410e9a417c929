"""The migrations produce exactly the schema the code declares, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from customersegment.v1 import assignment_pb2 as pb
from sqlalchemy import Engine, event, inspect

from customer_segments.store.migrate import HEAD_REVISION
from customer_segments.store.store import Store
from customer_segments.store.tables import POSTGRESQL_ONLY_INDEXES, metadata
from tests.conftest import Stubs


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
    assert revision == HEAD_REVISION


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


@pytest.mark.parametrize(
    ("q", "index"),
    [
        ("legalEntityId:le-1", "ix_customer_assignments_by_legal_entity"),
        ("assignmentType:AUTOMATIC", "ix_customer_assignments_by_type"),
    ],
)
async def test_queries_for_legal_entities_and_rare_types_use_the_partial_indexes(
    store: Store, stubs: Stubs, tenant: str, segment_id: str, q: str, index: str
) -> None:
    """The partial indexes leave MANUAL and B2C rows out; the planner must still prove that
    the service's own statement (with its bind parameters) may use them."""
    if store.database.dialect != "postgresql":
        pytest.skip("partial-index use is planned by PostgreSQL")
    for customer, legal_entity in (("c1", "le-1"), ("c2", ""), ("c3", "le-2")):
        await stubs.assignments.UpsertAssignment(
            pb.UpsertAssignmentRequest(
                tenant=tenant,
                segment_id=segment_id,
                customer_id=customer,
                legal_entity_id=legal_entity,
            )
        )
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "customer_assignments" in statement and tenant in repr(parameters):
            statements.append((statement, parameters))

    # Every engine: reads may go through the store's autocommit engine.
    event.listen(Engine, "before_cursor_execute", record)
    try:
        await stubs.assignments.ListAssignments(
            pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id, q=q)
        )
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert statements, "the listing ran no statement on customer_assignments"
    async with store.database.engine.connect() as connection:
        # A handful of rows: without this, reading the whole table is cheapest.
        definition = await connection.exec_driver_sql(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", (index,)
        )
        assert " WHERE " in definition.scalar_one()  # partial, as migration 0003 made it
        await connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            plan = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            assert index in "\n".join(row[0] for row in plan), statement
        await connection.rollback()
