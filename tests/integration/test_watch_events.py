"""WatchEvents over real gRPC on both databases: the backlog, then live events (woken by
LISTEN/NOTIFY on PostgreSQL, a poll on SQLite), resumption without gap, filters, pruned
sequences, authorization, and the end of the stream when the server stops."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import pytest
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import events_pb2, events_pb2_grpc, segment_pb2

from customer_segments.auth.tokens import TokenVerifier
from customer_segments.grpc.server import GrpcServer, start_grpc_server
from customer_segments.services import events as event_service
from customer_segments.services.events import prune_once, segment_deleted
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store
from tests.conftest import Stubs
from tests.helpers import TEST_SECRET, admin_tokens, bearer, error_info, expect_error, loads

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Generous: an arrival at all proves the wake-up, since the watcher's own re-read is made
# far later than this (WATCH_SAFETY_INTERVAL_S is raised below).
ARRIVAL_TIMEOUT_S = 5.0
CREATED = "customer-segment.customer-assignment-created"


@pytest.fixture(autouse=True)
def no_safety_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A live event can then arrive only because the notifier woke the watcher."""
    monkeypatch.setattr(event_service, "WATCH_SAFETY_INTERVAL_S", 600.0)


async def upsert(stubs: Stubs, tenant: str, segment_id: str, customer_id: str) -> None:
    await stubs.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id=customer_id)
    )


async def create_segment(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await stubs.segments.CreateSegment(
        segment_pb2.CreateSegmentRequest(
            tenant=tenant,
            segment=segment_pb2.Segment(id=segment_id, name={"en": "S"}, site_code="main"),
        )
    )


async def take(call: Any, count: int) -> list[events_pb2.Event]:
    events: list[events_pb2.Event] = []
    async with asyncio.timeout(ARRIVAL_TIMEOUT_S):
        while len(events) < count:
            events.append((await call.read()).event)
    return events


async def test_backlog_then_live_then_resume_without_gap(
    stubs: Stubs,
    grpc_server: GrpcServer,
    store: Store,
    tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pages of one event: a watcher behind by more than a page reads on without waiting for
    # a wake-up (the backlog's second event comes at once).
    monkeypatch.setattr(event_service, "WATCH_PAGE", 1)
    if store.database.dialect == "postgresql":
        assert grpc_server.notifier.listening  # LISTEN/NOTIFY, not a poll
    await create_segment(stubs, tenant, "gold")
    await upsert(stubs, tenant, "gold", "c1")
    call = stubs.events.WatchEvents(events_pb2.WatchEventsRequest(tenant=tenant))
    backlog = await take(call, 2)
    assert [(e.sequence, e.type) for e in backlog] == [
        (1, "customer-segment.segment-created"),
        (2, CREATED),
    ]
    assert loads(backlog[1].payload_json)["customer"] == {"id": "c1"}
    assert backlog[1].tenant == tenant and len(backlog[1].id) == 36
    await upsert(stubs, tenant, "gold", "c2")  # live
    live = await take(call, 1)
    assert (live[0].sequence, loads(live[0].payload_json)["customer"]["id"]) == (3, "c2")
    call.cancel()
    # Meanwhile, two more; a reconnect with the last sequence seen gets exactly those.
    await upsert(stubs, tenant, "gold", "c3")
    await upsert(stubs, tenant, "gold", "c4")
    resumed = stubs.events.WatchEvents(
        events_pb2.WatchEventsRequest(tenant=tenant, after_sequence=live[0].sequence)
    )
    assert [e.sequence for e in await take(resumed, 2)] == [4, 5]
    await upsert(stubs, tenant, "gold", "c5")
    assert [e.sequence for e in await take(resumed, 1)] == [6]
    resumed.cancel()


async def test_filters_by_type_and_segment(stubs: Stubs, tenant: str) -> None:
    await create_segment(stubs, tenant, "gold")
    await create_segment(stubs, tenant, "silver")
    call = stubs.events.WatchEvents(
        events_pb2.WatchEventsRequest(tenant=tenant, event_types=[CREATED], segment_id="gold")
    )
    await upsert(stubs, tenant, "silver", "c1")
    await upsert(stubs, tenant, "gold", "c1")  # created (c1 of silver is another)
    await upsert(stubs, tenant, "gold", "c1")  # updated: filtered out
    await upsert(stubs, tenant, "gold", "c2")
    seen = await take(call, 2)
    call.cancel()
    assert [(e.sequence, loads(e.payload_json)["customer"]["id"]) for e in seen] == [
        (4, "c1"),
        (6, "c2"),
    ]
    assert {e.type for e in seen} == {CREATED}


async def test_a_pruned_sequence_is_failed_precondition_naming_it(
    stubs: Stubs, store: Store, tenant: str
) -> None:
    now = utc_now()
    async with store.write() as connection:
        old = [segment_deleted(tenant, "a"), segment_deleted(tenant, "b")]
        await store.events.append(connection, tenant, old, now - timedelta(days=8))
        await store.events.append(connection, tenant, [segment_deleted(tenant, "c")], now)
    await prune_once(store, timedelta(days=7))
    error = await expect_error(
        stubs.events.WatchEvents(
            events_pb2.WatchEventsRequest(tenant=tenant, after_sequence=1)
        ).read(),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "sequence 2" in (error.details() or "")
    assert error_info(error).reason == "EVENTS_PRUNED"
    # From the oldest retained (0), or from right before it, is fine.
    for after in (0, 2):
        call = stubs.events.WatchEvents(
            events_pb2.WatchEventsRequest(tenant=tenant, after_sequence=after)
        )
        assert [e.sequence for e in await take(call, 1)] == [3]
        call.cancel()


async def test_watching_needs_read_scope_and_the_tenant(stubs: Stubs, tenant: str) -> None:
    cases = [
        (bearer("other"), grpc.StatusCode.PERMISSION_DENIED, "TENANT_MISMATCH"),
        (
            bearer(tenant, "customersegment.segment_manage"),
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPE_MISSING",
        ),
        ("Bearer nonsense", grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
    ]
    for authorization, code, reason in cases:
        call = stubs.events.WatchEvents(
            events_pb2.WatchEventsRequest(tenant=tenant),
            metadata=[("authorization", authorization)],
        )
        error = await expect_error(call.read(), code)
        assert error_info(error).reason == reason
    bad = stubs.events.WatchEvents(
        events_pb2.WatchEventsRequest(tenant=tenant, event_types=["customer-segment.nope"])
    )
    error = await expect_error(bad.read(), grpc.StatusCode.INVALID_ARGUMENT)
    assert "event_types" in (error.details() or "")


async def test_the_stream_ends_when_the_server_stops(store: Store, tenant: str) -> None:
    verifier = TokenVerifier(secret=TEST_SECRET.encode())
    server = await start_grpc_server(store, "127.0.0.1", 0, verifier=verifier)
    try:
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(target, interceptors=admin_tokens()) as channel:
            call = events_pb2_grpc.EventServiceStub(channel).WatchEvents(
                events_pb2.WatchEventsRequest(tenant=tenant)
            )
            await call.wait_for_connection()
            stopping = asyncio.create_task(server.stop(30))
            async with asyncio.timeout(10):  # far less than the grace of 30 s
                assert await call.read() is grpc.aio.EOF  # type: ignore[attr-defined]  # not in grpc-stubs
                assert await call.code() == grpc.StatusCode.OK
                await stopping
    finally:
        await server.stop(0)
