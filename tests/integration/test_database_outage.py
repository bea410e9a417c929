"""A database that goes away is UNAVAILABLE / 503 with Retry-After, never INTERNAL, and once
it is back no call fails on a connection the pool kept from before."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
import pytest
import pytest_asyncio
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2
from google.rpc import error_details_pb2
from sqlalchemy import func, literal_column, select
from sqlalchemy.pool import QueuePool

from customer_segments.domain.assignment import AssignmentKey
from customer_segments.domain.errors import Reason, Unavailable
from customer_segments.gateway.app import start_gateway
from customer_segments.store.database import Database
from tests.conftest import PG_ADMIN_URL, Service, fresh_postgres_database, service_on
from tests.helpers import SegmentFields, bearer, error_info, expect_error, status_details
from tests.own_postgres import OwnPostgres
from tests.tcp_proxy import TcpProxy

TENANT = "acme"
SEGMENT = "gold"


@pytest_asyncio.fixture(loop_scope="session")
async def behind_proxy() -> AsyncIterator[tuple[Service, TcpProxy]]:
    """A service whose PostgreSQL is reached through a proxy the test can cut."""
    with fresh_postgres_database("cs_outage") as url:
        address = urlsplit(url)
        proxy = TcpProxy(address.hostname or "127.0.0.1", address.port or 5432)
        await proxy.start()
        proxied = url.replace(f"@{address.hostname}:{address.port}", f"@127.0.0.1:{proxy.port}")
        assert proxied != url, PG_ADMIN_URL
        database = Database(proxied, pool_size=2, read_pool_size=2, expensive_read_pool_size=1)
        try:
            async with service_on(database) as service:
                await _create_segment(service)
                yield service, proxy
        finally:
            await proxy.cut()


async def _create_segment(service: Service) -> None:
    await service.stubs.segments.CreateSegment(
        segment_pb2.CreateSegmentRequest(
            tenant=TENANT,
            segment=segment_pb2.Segment(id=SEGMENT, name={"en": "G"}, site_code="main"),
        )
    )


async def _every_kind_of_call(service: Service, n: int) -> None:
    """A call on each pool: writes (single and one-statement bulk), plain and fast reads, an
    expensive read (a regular expression)."""
    stubs = service.stubs.assignments
    key: SegmentFields = {"tenant": TENANT, "segment_id": SEGMENT}
    await stubs.UpsertAssignment(pb.UpsertAssignmentRequest(**key, customer_id=f"c{n}"))
    await stubs.GetAssignment(pb.GetAssignmentRequest(**key, customer_id=f"c{n}"))
    items = [pb.BulkUpsertItem(customer_id=f"bulk-{n}-{i}") for i in range(3)]
    results = [
        result.code
        async for chunk in stubs.BulkUpsertAssignments(
            pb.BulkUpsertAssignmentsRequest(**key, items=items)
        )
        for result in chunk.results
    ]
    assert results == [201, 201, 201]
    page = await stubs.ListAssignments(pb.ListAssignmentsRequest(**key, q=f"customerId:~^c{n}$"))
    assert [a.customer.id for a in page.assignments] == [f"c{n}"]
    await service.stubs.segments.ListSegments(segment_pb2.ListSegmentsRequest(tenant=TENANT))
    # The segments of a customer, on a read connection of its own (FastRead.all_alone).
    mine = await service.stubs.segments.ListSegments(
        segment_pb2.ListSegmentsRequest(tenant=TENANT, customer_id=f"c{n}")
    )
    assert [segment.id for segment in mine.segments] == [SEGMENT]


async def test_after_the_database_was_away_the_first_calls_succeed(
    behind_proxy: tuple[Service, TcpProxy],
) -> None:
    service, proxy = behind_proxy
    await _every_kind_of_call(service, 1)  # every pool holds a connection
    await proxy.cut()
    await asyncio.sleep(0.2)  # the database is away for a moment; nobody calls
    await proxy.start()
    await _every_kind_of_call(service, 2)


async def test_after_a_postgresql_restart_no_call_fails(own_postgres: OwnPostgres) -> None:
    """The service is idle while the database restarts (its connections are terminated); the
    first calls after it, on every pool, succeed. Then the database is stopped: UNAVAILABLE,
    until it is started again."""
    async with service_on(Database(own_postgres.url)) as service:
        await _create_segment(service)
        await _every_kind_of_call(service, 1)
        await asyncio.to_thread(own_postgres.restart)
        await _every_kind_of_call(service, 2)
        await asyncio.to_thread(own_postgres.stop)
        try:
            await expect_error(
                service.stubs.assignments.GetAssignment(
                    pb.GetAssignmentRequest(tenant=TENANT, segment_id=SEGMENT, customer_id="c1")
                ),
                grpc.StatusCode.UNAVAILABLE,
                "retry",
            )
        finally:
            await asyncio.to_thread(own_postgres.start)
        await _every_kind_of_call(service, 3)


async def test_while_the_database_is_away_calls_are_unavailable(
    behind_proxy: tuple[Service, TcpProxy],
) -> None:
    service, proxy = behind_proxy
    await _every_kind_of_call(service, 1)
    stubs = service.stubs.assignments
    key: SegmentFields = {"tenant": TENANT, "segment_id": SEGMENT}
    calls: list[Any] = [
        lambda: stubs.GetAssignment(pb.GetAssignmentRequest(**key, customer_id="c1")),
        lambda: stubs.UpsertAssignment(pb.UpsertAssignmentRequest(**key, customer_id="c9")),
        lambda: stubs.ListAssignments(pb.ListAssignmentsRequest(**key, q="customerId:~c")),
        lambda: stubs.ListAssignments(pb.ListAssignmentsRequest(**key)),
        lambda: stubs.RemoveAssignment(pb.RemoveAssignmentRequest(**key, customer_id="c1")),
        lambda: service.stubs.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(tenant=TENANT, customer_id="c1")
        ),
    ]
    gateway = await start_gateway(f"127.0.0.1:{service.port}", "127.0.0.1", 0)
    try:
        await proxy.cut()
        for _ in range(2):  # the lost connections, then refused ones
            for call in calls:
                error = await expect_error(call(), grpc.StatusCode.UNAVAILABLE, "retry")
                assert error_info(error).reason == Reason.DATABASE_UNAVAILABLE
                (retry,) = status_details(error, error_details_pb2.RetryInfo)
                assert retry.retry_delay.ToSeconds() == 1
            stream = stubs.BulkUpsertAssignments(
                pb.BulkUpsertAssignmentsRequest(**key, items=[pb.BulkUpsertItem(customer_id="b")])
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in stream:
                    pass
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        async with aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as http:
            path = f"/customer-segment/{TENANT}/segments/{SEGMENT}/customers/c1"
            async with http.get(path, headers={"Authorization": bearer(TENANT)}) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"  # RetryInfo's delay
                body = await response.json()
                assert body["code"] == 503 and body["status"] == "Service Unavailable"
                # Not where the database is, nor what its driver said.
                text = json.dumps(body)
                assert "127.0.0.1" not in text and str(proxy.port) not in text, body
                assert body["message"] == "The database is unavailable; retry later."
    finally:
        await gateway.stop()
        await proxy.start()
    await _every_kind_of_call(service, 3)


async def test_sqlite_locked_beyond_the_busy_timeout_is_unavailable(tmp_path: Any) -> None:
    path = tmp_path / "locked.db"
    async with service_on(Database(f"sqlite:///{path}", sqlite_busy_timeout_ms=50)) as service:
        await _create_segment(service)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            # Another process holds the write lock. Taken off the event loop: a write of the
            # service's own (its first prune of old events, late on a busy machine) may hold
            # the lock now, and it needs the loop to commit (CI once deadlocked here for
            # sqlite3's 5 s timeout).
            await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
            upsert = pb.UpsertAssignmentRequest(tenant=TENANT, segment_id=SEGMENT, customer_id="c")
            error = await expect_error(
                service.stubs.assignments.UpsertAssignment(upsert),
                grpc.StatusCode.UNAVAILABLE,
                "retry",
            )
            assert error_info(error).reason == Reason.DATABASE_UNAVAILABLE
            assert status_details(error, error_details_pb2.RetryInfo)
        finally:
            other.close()
        await service.stubs.assignments.UpsertAssignment(upsert)  # the lock is gone


async def test_a_connection_lost_in_use_is_unavailable(
    behind_proxy: tuple[Service, TcpProxy],
) -> None:
    """The database goes away while a call holds its connection (the fast read path, which
    bypasses SQLAlchemy, and a transaction)."""
    service, proxy = behind_proxy
    store = service.store
    await _every_kind_of_call(service, 1)
    key = AssignmentKey(TENANT, SEGMENT, "c1", "")
    try:
        with pytest.raises(Unavailable):
            async with store.read() as connection:
                await proxy.cut()
                await store.assignments.get(connection, key)
        await proxy.start()
        with pytest.raises(Unavailable):
            async with store.write() as connection:
                await store.assignments.get(connection, key)
                await proxy.cut()
                await store.assignments.delete(connection, key)
    finally:
        await proxy.start()
    await _every_kind_of_call(service, 2)


async def test_a_connection_of_its_own_lost_in_use_is_unavailable(
    behind_proxy: tuple[Service, TcpProxy],
) -> None:
    """A read on a connection of its own (FastRead.one_alone, GetAssignment's path, which
    takes it from the read pool without SQLAlchemy's Connection) loses it while its statement
    runs: Unavailable, the connection does not stay checked out, and once the database is back
    the next calls succeed."""
    service, proxy = behind_proxy
    database = service.store.database
    slow = database.fast_read(select(func.pg_sleep(literal_column("0.5"))))
    await _every_kind_of_call(service, 1)
    pool = database.engines[1].sync_engine.pool  # the read pool
    assert isinstance(pool, QueuePool)
    try:
        statement = asyncio.ensure_future(slow.one_alone({}))
        await asyncio.sleep(0.2)
        assert not statement.done()
        await proxy.cut()
        with pytest.raises(Unavailable):
            await statement
        with pytest.raises(Unavailable):  # refused now
            await service.store.assignments.read(AssignmentKey(TENANT, SEGMENT, "c1", ""))
    finally:
        await proxy.cut()  # (idempotent) so that start() below can listen again
        await proxy.start()
    await _every_kind_of_call(service, 2)
    # Background reads (the outbox's poll) may hold one a moment; none is left out for good.
    for _ in range(100):
        if not pool.checkedout():
            break
        await asyncio.sleep(0.05)
    assert pool.checkedout() == 0
