"""Every write path stores exactly the Emporix change events of what it changed, in its own
transaction, on both databases; rejected, invalid and rolled-back writes store none."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, timedelta
from typing import Any

import grpc
import pytest
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import directory_pb2, segment_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from customer_segments.domain.assignment import AssignmentKey, AssignmentWrite
from customer_segments.domain.events import assignment_written, instant
from customer_segments.domain.segment import SegmentInput
from customer_segments.services import bulk_assignments
from customer_segments.services.assignments import write_assignment
from customer_segments.services.events import prune_once, segment_deleted
from customer_segments.services.segments import insert_segment
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store
from customer_segments.store.tables import event_batches
from tests.conftest import Stubs
from tests.helpers import admin_metadata

pytestmark = pytest.mark.asyncio(loop_scope="session")

PREFIX = "customer-segment."


async def events_of(store: Store, tenant: str, after: int = 0) -> list[tuple[str, dict[str, Any]]]:
    async with store.read() as connection:
        stored = await store.events.after(connection, tenant, after, 1000)
    assert [event.sequence for event in stored] == list(range(after + 1, after + 1 + len(stored)))
    return [(event.type.removeprefix(PREFIX), event.payload) for event in stored]


async def last_sequence(store: Store, tenant: str) -> int:
    async with store.read() as connection:
        return await store.events.last_sequence(connection, tenant)


def at(value: Timestamp) -> str:
    return instant(value.ToDatetime(tzinfo=UTC))


def metadata(message: Any) -> dict[str, Any]:
    given = message.metadata
    return {
        "createdAt": at(given.created_at),
        "modifiedAt": at(given.modified_at),
        "version": given.version,
    }


async def new_segment(stubs: Stubs, tenant: str, segment_id: str) -> segment_pb2.Segment:
    return (
        await stubs.segments.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                tenant=tenant,
                segment=segment_pb2.Segment(
                    id=segment_id,
                    name={"en": "Gold"},
                    site_code="main",
                    status=segment_pb2.SEGMENT_STATUS_ACTIVE,
                    mixins_json='{"color":"gold"}',
                ),
            )
        )
    ).segment


async def get(stubs: Stubs, tenant: str, customer_id: str, legal_entity_id: str = "") -> Any:
    return (
        await stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(
                tenant=tenant,
                segment_id="gold",
                customer_id=customer_id,
                legal_entity_id=legal_entity_id,
            )
        )
    ).assignment


async def test_single_writes_and_segment_life_emit_exact_payloads(
    store: Store, stubs: Stubs, tenant: str
) -> None:
    await stubs.directory.UpsertCustomer(
        directory_pb2.UpsertCustomerRequest(
            tenant=tenant, customer_id="c1", first_name="John", last_name="Doe", email="j@d.example"
        )
    )
    await stubs.directory.UpsertLegalEntity(
        directory_pb2.UpsertLegalEntityRequest(tenant=tenant, legal_entity_id="le1", name="Acme")
    )
    created = await new_segment(stubs, tenant, "gold")
    upsert = pb.UpsertAssignmentRequest(
        tenant=tenant, segment_id="gold", customer_id="c1", mixins_json='{"tier":20}'
    )
    await stubs.assignments.UpsertAssignment(upsert)
    first = await get(stubs, tenant, "c1")
    await stubs.assignments.UpsertAssignment(upsert)  # nothing changes but the version
    second = await get(stubs, tenant, "c1")
    await stubs.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(
            tenant=tenant, segment_id="gold", customer_id="c9", legal_entity_id="le1"
        )
    )
    b2b = await get(stubs, tenant, "c9", "le1")
    remove = pb.RemoveAssignmentRequest(tenant=tenant, segment_id="gold", customer_id="c1")
    await stubs.assignments.RemoveAssignment(remove)
    await stubs.assignments.RemoveAssignment(remove)  # absent: idempotent, no event
    patched = (
        await stubs.segments.PatchSegment(
            segment_pb2.PatchSegmentRequest(
                tenant=tenant,
                segment_id="gold",
                operations=[
                    segment_pb2.JsonPatchOperation(
                        op="replace", path="/status", value_json='"INACTIVE"'
                    )
                ],
            )
        )
    ).segment
    await stubs.segments.DeleteSegment(
        segment_pb2.DeleteSegmentRequest(tenant=tenant, segment_id="gold", force=True)
    )

    segment_fields = {
        "tenant": tenant,
        "id": "gold",
        "name": {"en": "Gold"},
        "description": {},
        "siteCode": "main",
        "validity": {},
    }
    c1 = {
        "tenant": tenant,
        "segmentId": "gold",
        "assignmentType": "MANUAL",
        "customer": {"id": "c1", "firstName": "John", "lastName": "Doe", "email": "j@d.example"},
        "mixins": {"tier": 20},
    }
    assert await events_of(store, tenant) == [
        ("segment-created", segment_fields | {"status": "ACTIVE", "metadata": metadata(created)}),
        ("customer-assignment-created", c1 | {"metadata": metadata(first)}),
        ("customer-assignment-updated", c1 | {"metadata": metadata(second)}),
        (
            "customer-assignment-created",
            {
                "tenant": tenant,
                "segmentId": "gold",
                "assignmentType": "MANUAL",
                "customer": {"id": "c9"},  # unknown to the directory: only the id
                "legalEntity": {"id": "le1", "name": "Acme"},
                "metadata": metadata(b2b),
                "mixins": {},
            },
        ),
        (
            "customer-assignment-deleted",
            {"tenant": tenant, "segmentId": "gold", "customerId": "c1"},
        ),
        (
            "segment-updated",
            segment_fields
            | {
                "status": "INACTIVE",
                "metadata": metadata(patched),
                "mixins": {"color": "gold"},
                "previousStatus": "ACTIVE",
            },
        ),
        (
            "customer-assignment-deleted",
            {"tenant": tenant, "segmentId": "gold", "customerId": "c9", "legalEntityId": "le1"},
        ),
        ("segment-deleted", {"tenant": tenant, "id": "gold"}),
    ]
    assert second.metadata.version == 2


async def test_bulk_and_stream_writes_emit_one_event_per_item_written(
    store: Store, stubs: Stubs, tenant: str
) -> None:
    await new_segment(stubs, tenant, "gold")
    await stubs.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(tenant=tenant, segment_id="gold", customer_id="old")
    )
    await stubs.directory.UpsertCustomer(
        directory_pb2.UpsertCustomerRequest(tenant=tenant, customer_id="a", first_name="Ann")
    )
    start = await last_sequence(store, tenant)
    items = [
        pb.BulkUpsertItem(customer_id="a", mixins_json='{"n":1}'),
        pb.BulkUpsertItem(customer_id="", mixins_json='{"n":2}'),  # invalid: no event
        pb.BulkUpsertItem(customer_id="a", mixins_json='{"n":3}'),  # repeated: updated, in order
        pb.BulkUpsertItem(customer_id="old", version=7),  # stale version: no event
        pb.BulkUpsertItem(customer_id="old", version=1),  # conditional, written
        pb.BulkUpsertItem(customer_id="b", legal_entity_id="le2"),
    ]
    async for _ in stubs.assignments.BulkUpsertAssignments(
        pb.BulkUpsertAssignmentsRequest(tenant=tenant, segment_id="gold", items=items)
    ):
        pass
    bulk = await events_of(store, tenant, start)
    assert [
        (kind, payload["customer"]["id"], payload["metadata"]["version"]) for kind, payload in bulk
    ] == [
        ("customer-assignment-created", "a", 1),
        ("customer-assignment-created", "b", 1),
        # the second occurrences, in the order the chunk writes them
        ("customer-assignment-updated", "a", 2),
        ("customer-assignment-updated", "old", 2),
    ]
    assert bulk[0][1]["mixins"] == {"n": 1} and bulk[2][1]["mixins"] == {"n": 3}
    a = await get(stubs, tenant, "a")
    assert bulk[2][1]["metadata"] == metadata(a)
    assert bulk[1][1]["legalEntity"] == {"id": "le2"}
    assert bulk[0][1]["customer"] == {"id": "a", "firstName": "Ann"}  # from the directory

    async def removals() -> AsyncIterator[pb.StreamRemoveAssignmentsRequest]:
        yield pb.StreamRemoveAssignmentsRequest(
            tenant=tenant,
            segment_id="gold",
            items=[pb.BulkRemoveItem(customer_id="a"), pb.BulkRemoveItem(customer_id="a")],
        )
        yield pb.StreamRemoveAssignmentsRequest(
            items=[
                pb.BulkRemoveItem(customer_id="gone"),
                pb.BulkRemoveItem(customer_id="b", legal_entity_id="le2"),
            ]
        )

    start = await last_sequence(store, tenant)
    async for _ in stubs.assignments.StreamRemoveAssignments(
        removals(), metadata=admin_metadata(tenant)
    ):
        pass
    assert await events_of(store, tenant, start) == [
        ("customer-assignment-deleted", {"tenant": tenant, "segmentId": "gold", "customerId": "a"}),
        (
            "customer-assignment-deleted",
            {"tenant": tenant, "segmentId": "gold", "customerId": "b", "legalEntityId": "le2"},
        ),
    ]

    async def upserts() -> AsyncIterator[pb.StreamUpsertAssignmentsRequest]:
        yield pb.StreamUpsertAssignmentsRequest(
            tenant=tenant, segment_id="gold", items=[pb.BulkUpsertItem(customer_id="s1")]
        )
        yield pb.StreamUpsertAssignmentsRequest(items=[pb.BulkUpsertItem(customer_id="s2")])

    start = await last_sequence(store, tenant)
    async for _ in stubs.assignments.StreamUpsertAssignments(
        upserts(), metadata=admin_metadata(tenant)
    ):
        pass
    streamed = await events_of(store, tenant, start)
    assert [(kind, payload["customer"]["id"]) for kind, payload in streamed] == [
        ("customer-assignment-created", "s1"),
        ("customer-assignment-created", "s2"),
    ]


async def test_a_bulk_chunk_tells_what_the_general_path_tells(
    store: Store, stubs: Stubs, tenant: str
) -> None:
    """A chunk of distinct unconditional items is one statement, whose events PostgreSQL keeps
    as one event_batches row: each payload read back is the one domain/events builds from the
    assignment as stored, for every shape of directory entry, legal entity and mixins, and the
    events follow the request's order. On SQLite the same chunk takes the general path."""
    await new_segment(stubs, tenant, "gold")
    directory = stubs.directory
    await directory.UpsertCustomer(
        directory_pb2.UpsertCustomerRequest(
            tenant=tenant,
            customer_id="full",
            first_name="Zoë",
            last_name="Ødegård",
            email="z@example.com",
        )
    )
    await directory.UpsertCustomer(
        directory_pb2.UpsertCustomerRequest(tenant=tenant, customer_id="mail", email="m@x.io")
    )
    await directory.UpsertLegalEntity(
        directory_pb2.UpsertLegalEntityRequest(tenant=tenant, legal_entity_id="le1", name="ACME")
    )
    mixins = '{"z": null, "a": {"deep": [1, 2.5, "ü", null, true]}, "": "empty key"}'
    shapes = [
        ("zed", "", mixins),
        ("full", "", ""),
        ("mail", "le1", '{"n": 1}'),
        ("full", "le1", ""),
        ("anon", "le-unknown", '{"n": 2}'),
        ("abc", "", "{}"),
    ]

    def items() -> list[tuple[int, AssignmentWrite]]:
        return [
            (
                index,
                AssignmentWrite.parse(
                    AssignmentKey(tenant, "gold", customer_id, legal_entity_id), given, "", None
                ),
            )
            for index, (customer_id, legal_entity_id, given) in enumerate(shapes, start=1)
        ]

    for expected_type in ("customer-assignment-created", "customer-assignment-updated"):
        start = await last_sequence(store, tenant)
        chunk = bulk_assignments.ValidatedUpserts([], items())
        results = await bulk_assignments._write_upserts(store, chunk)
        assert [result.code for result in results] == [
            201 if expected_type.endswith("created") else 204
        ] * len(shapes)
        told = await events_of(store, tenant, start)
        async with store.read() as connection:
            stored = [await store.assignments.get(connection, write.key) for _, write in items()]
        expected = []
        for assignment in stored:
            assert assignment is not None
            expected.append((expected_type, assignment_written(tenant, assignment)))
        assert told == expected
    async with store.read() as connection:
        batches = await connection.execute(
            select(func.count()).select_from(event_batches).where(event_batches.c.tenant == tenant)
        )
    # PostgreSQL keeps each chunk's events as one row; SQLite as rows of the events table.
    assert batches.scalar_one() == (2 if store.database.dialect == "postgresql" else 0)


async def test_rejected_invalid_and_rolled_back_writes_emit_nothing(
    store: Store, stubs: Stubs, tenant: str
) -> None:
    await new_segment(stubs, tenant, "gold")
    await stubs.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(tenant=tenant, segment_id="gold", customer_id="c1")
    )
    start = await last_sequence(store, tenant)
    refused: list[Awaitable[Any]] = [
        stubs.assignments.UpsertAssignment(  # a stale version
            pb.UpsertAssignmentRequest(
                tenant=tenant, segment_id="gold", customer_id="c1", version=5
            )
        ),
        stubs.assignments.UpsertAssignment(  # mixins not JSON
            pb.UpsertAssignmentRequest(
                tenant=tenant, segment_id="gold", customer_id="c1", mixins_json="{"
            )
        ),
        stubs.assignments.UpsertAssignment(  # no such segment
            pb.UpsertAssignmentRequest(tenant=tenant, segment_id="none", customer_id="c1")
        ),
        stubs.assignments.UpsertAssignment(  # must exist, rolled back after the insert
            pb.UpsertAssignmentRequest(
                tenant=tenant, segment_id="gold", customer_id="new", must_exist=True
            )
        ),
        stubs.segments.UpsertSegment(  # must exist: the creation is rolled back
            segment_pb2.UpsertSegmentRequest(
                tenant=tenant,
                segment_id="silver",
                must_exist=True,
                segment=segment_pb2.Segment(name={"en": "Silver"}, site_code="main"),
            )
        ),
        stubs.segments.DeleteSegment(  # has assignments, no force
            segment_pb2.DeleteSegmentRequest(tenant=tenant, segment_id="gold")
        ),
        stubs.segments.CreateSegment(  # taken
            segment_pb2.CreateSegmentRequest(
                tenant=tenant,
                segment=segment_pb2.Segment(id="gold", name={"en": "G"}, site_code="main"),
            )
        ),
    ]
    for call in refused:
        with pytest.raises(grpc.aio.AioRpcError):
            await call
    # A bulk item the database rejects is retried alone; what fails leaves nothing behind.
    write = AssignmentWrite.parse(AssignmentKey(tenant, "none", "x", ""), "", "", None)
    result = await bulk_assignments._upsert_alone(store, 1, write)
    assert result.code == 404
    assert await last_sequence(store, tenant) == start
    assert await events_of(store, tenant, start) == []


async def test_without_events_writes_store_none(store: Store, tenant: str) -> None:
    quiet = Store(store.database, events=False)
    await insert_segment(
        quiet, tenant, "gold", SegmentInput({"en": "G"}, {}, None, None, None, "main", "", "")
    )
    write = AssignmentWrite.parse(AssignmentKey(tenant, "gold", "c1", ""), "", "", None)
    await write_assignment(quiet, write)
    chunk = bulk_assignments.ValidatedUpserts(
        [], [(1, write._replace(key=write.key._replace(customer_id="c2")))]
    )
    await bulk_assignments._write_upserts(quiet, chunk)
    assert await last_sequence(store, tenant) == 0


async def test_an_old_event_is_pruned(store: Store, tenant: str) -> None:
    now = utc_now()
    async with store.write() as connection:
        await store.events.append(
            connection, tenant, [segment_deleted(tenant, "a")], now - timedelta(days=8)
        )
        await store.events.append(connection, tenant, [segment_deleted(tenant, "b")], now)
    assert await prune_once(store, timedelta(days=7), batch=1) >= 1
    kept = await events_of(store, tenant, 1)
    assert kept == [("segment-deleted", {"tenant": tenant, "id": "b"})]
    async with store.read() as connection:
        assert await store.events.oldest_sequence(connection, tenant) == 2
