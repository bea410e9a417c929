"""Reads a caller can make slow (q with a regular expression) queue for a few connections of
their own: with all of them busy, writes and plain reads go on."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from customersegment.v1 import assignment_pb2 as pb

from customer_segments.store.store import Store
from tests.conftest import Stubs


async def test_with_every_expensive_read_connection_busy_writes_and_reads_go_on(
    store: Store, stubs: Stubs, tenant: str, segment_id: str
) -> None:
    key = {"tenant": tenant, "segment_id": segment_id}
    calls = stubs.assignments
    async with AsyncExitStack() as held:
        for _ in range(store.database.expensive_read_pool_size):
            await held.enter_async_context(store.expensive_read(60_000))
        search = asyncio.ensure_future(
            calls.ListAssignments(pb.ListAssignmentsRequest(**key, q="customerId:~^c"), timeout=60)
        )
        for n in range(25):  # more writes than any pool has connections
            await calls.UpsertAssignment(
                pb.UpsertAssignmentRequest(**key, customer_id=f"c{n}"), timeout=30
            )
        items = [pb.BulkUpsertItem(customer_id=f"bulk{n}") for n in range(3)]
        async for _ in calls.BulkUpsertAssignments(
            pb.BulkUpsertAssignmentsRequest(**key, items=items), timeout=30
        ):
            pass
        got = await calls.GetAssignment(pb.GetAssignmentRequest(**key, customer_id="c1"))
        assert got.customer.id == "c1"
        plain = await calls.ListAssignments(pb.ListAssignmentsRequest(**key, q="customerId:c2"))
        assert [a.customer.id for a in plain.assignments] == ["c2"]
        # The regular expression still waits for a connection of its own kind.
        assert not search.done()
    page = await search
    assert len(page.assignments) == 25
