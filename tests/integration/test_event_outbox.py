"""The outbox keeps each tenant's events numbered from 1 with no gap, and a rolled-back
transaction leaves none."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import pytest

from customer_segments.domain.assignment import AssignmentKey, AssignmentWrite
from customer_segments.domain.segment import SegmentInput
from customer_segments.services import bulk_assignments
from customer_segments.services.assignments import write_assignment
from customer_segments.services.bulk_assignments import ValidatedUpserts
from customer_segments.services.segments import insert_segment
from customer_segments.store.database import utc_now
from customer_segments.store.events import NewEvent
from customer_segments.store.store import Store

pytestmark = pytest.mark.asyncio(loop_scope="session")


class _RolledBack(Exception):
    pass


async def test_sequences_count_per_tenant_and_a_rollback_leaves_no_event(store: Store) -> None:
    tenant, other = f"t{secrets.token_hex(4)}", f"t{secrets.token_hex(4)}"
    created = NewEvent("customer-segment.segment-created", "s1", {"tenant": tenant, "id": "s1"})
    async with store.write() as connection:
        first = await store.events.append(connection, tenant, [created, created], utc_now())
    async with store.write() as connection:
        await store.events.append(connection, other, [created], utc_now())
    with pytest.raises(_RolledBack):
        async with store.write() as connection:
            await store.events.append(connection, tenant, [created], utc_now())
            raise _RolledBack
    async with store.write() as connection:
        third = await store.events.append(connection, tenant, [created], utc_now())
    async with store.read() as connection:
        stored = await store.events.after(connection, tenant, 0, 10)
        oldest = await store.events.oldest_sequence(connection, tenant)
    assert [event.sequence for event in first + third] == [1, 2, 3]
    assert [event.sequence for event in stored] == [1, 2, 3]
    assert len({event.id for event in stored}) == 3
    assert stored[0].payload == {"tenant": tenant, "id": "s1"}
    assert oldest == 1


async def _chunk(store: Store, tenant: str, segment_id: str, customer_ids: list[str]) -> None:
    """A bulk chunk of unconditional items: one event_batches row on PostgreSQL."""
    writes = [
        (n, AssignmentWrite.parse(AssignmentKey(tenant, segment_id, customer_id, ""), "", "", None))
        for n, customer_id in enumerate(customer_ids, start=1)
    ]
    results = await bulk_assignments._write_upserts(store, ValidatedUpserts([], writes))
    assert all(result.code in (201, 204) for result in results)


async def test_batched_and_single_events_read_as_one_outbox(store: Store) -> None:
    """Events of bulk chunks (kept as one row per chunk on PostgreSQL) and single events read
    as one sequence: every page, from any position (inside a batch too), of any size, with
    or without filters, is the matching slice of the whole; ids stay the same at every read;
    pruning removes both kinds."""
    tenant = f"t{secrets.token_hex(4)}"
    for segment_id in ("gold", "silver"):
        await insert_segment(
            store,
            tenant,
            segment_id,
            SegmentInput({"en": "G"}, {}, None, None, None, "main", "", ""),
        )
    await _chunk(store, tenant, "gold", ["a", "b", "c", "d", "e"])
    await write_assignment(
        store, AssignmentWrite.parse(AssignmentKey(tenant, "silver", "x", ""), "", "", None)
    )
    await _chunk(store, tenant, "gold", ["c", "f", "a"])  # updated, created, updated
    await _chunk(store, tenant, "silver", ["x", "y"])
    # A single event past the batches, of a type they hold too: a page of batches whose
    # events a filter drops must not let it overtake theirs.
    await write_assignment(
        store, AssignmentWrite.parse(AssignmentKey(tenant, "silver", "x", ""), "", "", None)
    )
    async with store.read() as connection:
        whole = await store.events.after(connection, tenant, 0, 1000)
        again = await store.events.after(connection, tenant, 0, 1000)
        texts = await store.events.after_as_text(connection, tenant, 0, 1000)
        oldest = await store.events.oldest_sequence(connection, tenant)
    assert [event.sequence for event in whole] == list(range(1, 15))
    assert oldest == 1
    assert [event.id for event in again] == [event.id for event in whole]
    assert len({event.id for event in whole}) == len(whole)
    assert [(event.sequence, event.id, json.loads(event.payload_json)) for event in texts] == [
        (event.sequence, event.id, event.payload) for event in whole
    ]
    updated = "customer-segment.customer-assignment-updated"
    told = [
        (
            event.type.rsplit("-", 1)[1],
            event.segment_id,
            event.payload.get("customer", {}).get("id"),
        )
        for event in whole
    ]
    assert told[2:] == [
        ("created", "gold", "a"),
        ("created", "gold", "b"),
        ("created", "gold", "c"),
        ("created", "gold", "d"),
        ("created", "gold", "e"),
        ("created", "silver", "x"),
        ("updated", "gold", "c"),
        ("created", "gold", "f"),
        ("updated", "gold", "a"),
        ("updated", "silver", "x"),
        ("created", "silver", "y"),
        ("updated", "silver", "x"),
    ]
    filters: list[dict[str, Any]] = [
        {},
        {"types": [updated]},
        {"types": ["customer-segment.segment-created"]},
        {"segment_id": "gold"},
        {"types": [updated], "segment_id": "silver"},
    ]
    async with store.read() as connection:
        for given in filters:
            matching = [
                event
                for event in whole
                if event.type in given.get("types", [event.type])
                and event.segment_id == given.get("segment_id", event.segment_id)
            ]
            for after in range(len(whole) + 1):
                later = [event for event in matching if event.sequence > after]
                for limit in (1, 2, 3, 1000):
                    page = await store.events.after(connection, tenant, after, limit, **given)
                    assert page == later[:limit], (given, after, limit)
    async with store.write() as connection:
        went = await store.events.prune(connection, tenant, utc_now() + timedelta(days=1), 100)
    async with store.read() as connection:
        assert await store.events.after(connection, tenant, 0, 1000) == []
        assert await store.events.oldest_sequence(connection, tenant) is None
    assert went == len(whole)
