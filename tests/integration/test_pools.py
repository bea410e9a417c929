"""Reads a caller can make slow (q with a regular expression) queue for a few connections of
their own: with all of them busy, writes and plain reads go on, and a search that finds no
connection within the pool timeout is UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, ExitStack

import grpc
import pytest
import pytest_asyncio
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2
from google.rpc import error_details_pb2

from customer_segments.domain.errors import Reason
from customer_segments.store.database import Database
from customer_segments.store.store import Store
from tests.conftest import BACKENDS, Service, Stubs, fresh_postgres_database, service_on
from tests.helpers import SegmentFields, error_info, expect_error, status_details


async def test_with_every_expensive_read_connection_busy_writes_and_reads_go_on(
    store: Store, stubs: Stubs, tenant: str, segment_id: str
) -> None:
    key: SegmentFields = {"tenant": tenant, "segment_id": segment_id}
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
        got = (
            await calls.GetAssignment(pb.GetAssignmentRequest(**key, customer_id="c1"))
        ).assignment
        assert got.customer.id == "c1"
        plain = await calls.ListAssignments(pb.ListAssignmentsRequest(**key, q="customerId:c2"))
        assert [a.customer.id for a in plain.assignments] == ["c2"]
        # The regular expression still waits for a connection of its own kind.
        assert not search.done()
    page = await search
    assert len(page.assignments) == 25


@pytest_asyncio.fixture(params=BACKENDS, loop_scope="session")
async def impatient(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    """A service whose calls wait at most 0.2 s for a pooled connection."""
    with ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(fresh_postgres_database("cs_pools"))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('pools') / 'p.db'}"
        async with service_on(Database(url, pool_timeout_s=0.2)) as service:
            yield service


async def test_a_search_that_finds_no_connection_in_time_is_unavailable(
    impatient: Service,
) -> None:
    stubs = impatient.stubs
    await stubs.segments.CreateSegment(
        segment_pb2.CreateSegmentRequest(
            tenant="acme", segment=segment_pb2.Segment(id="s", name={"en": "S"}, site_code="m")
        )
    )
    request = pb.ListAssignmentsRequest(tenant="acme", segment_id="s", q="customerId:~x")
    async with AsyncExitStack() as held:
        for _ in range(impatient.store.database.expensive_read_pool_size):
            await held.enter_async_context(impatient.store.expensive_read(60_000))
        error = await expect_error(
            stubs.assignments.ListAssignments(request), grpc.StatusCode.UNAVAILABLE, "busy"
        )
        assert error_info(error).reason == Reason.DATABASE_BUSY
        assert status_details(error, error_details_pb2.RetryInfo)
    await stubs.assignments.ListAssignments(request)
