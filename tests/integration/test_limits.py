"""What a caller can make a server hold, and for how long: receive limit, refusal before the
request is read, first-message deadline, keepalive pings, connection age, and the REST port's
timeouts, connection cap and probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from customer_segments.app import server_limits
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.config import Settings
from customer_segments.gateway.app import Gateway, start_gateway
from customer_segments.gateway.connection_limits import HttpLimits
from customer_segments.gateway.http_server import STOPPING, log_accept_errors_once
from customer_segments.grpc.server import GrpcServer, ServerLimits, start_grpc_server
from customer_segments.limits import MIB
from customer_segments.store.database import Database
from customer_segments.store.store import Store
from tests.conftest import Stubs
from tests.helpers import TEST_SECRET, admin_metadata, expect_error

Upsert = assignment_pb2.UpsertAssignmentRequest


def _upsert(tenant: str, segment_id: str, mixins_bytes: int) -> Upsert:
    return Upsert(
        tenant=tenant,
        segment_id=segment_id,
        customer_id="big",
        mixins_json=json.dumps({"blob": "x" * mixins_bytes}),
    )


# A request to a segment that does not exist is read, then answered NOT_FOUND: the cheapest
# proof that the receive limit let it in (over it, the answer is RESOURCE_EXHAUSTED).


async def test_a_10_mb_assignment_and_a_1000_item_bulk_with_mixins_are_read(
    stubs: Stubs, tenant: str
) -> None:
    await expect_error(
        stubs.assignments.UpsertAssignment(_upsert(tenant, "none", 10 * MIB), timeout=60),
        grpc.StatusCode.NOT_FOUND,
    )
    item = assignment_pb2.BulkUpsertItem
    bulk = assignment_pb2.BulkUpsertAssignmentsRequest(
        tenant=tenant,
        segment_id="none",
        items=[
            item(customer_id=f"c{n}", mixins_json=json.dumps({"note": "y" * 10_000}))
            for n in range(1000)
        ],
    )
    assert bulk.ByteSize() > 9 * MIB
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stubs.assignments.BulkUpsertAssignments(bulk, timeout=60):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND, raised.value


async def test_a_rest_bulk_of_200_items_and_almost_10_mb_passes_the_gateway(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    # Compact JSON: the gateway writes mixins out with ", " and ": ", a little longer.
    mixins = {f"k{n}": "v" * 990 for n in range(50)}
    items = [{"customerId": f"c{n}", "mixins": mixins} for n in range(200)]
    body = json.dumps(items, separators=(",", ":")).encode()
    assert 9 * MIB < len(body) < 10 * MIB
    async with http.put(
        f"/customer-segment/{tenant}/segments/none/customers/bulk",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 404, await response.text()


async def test_a_message_over_the_receive_limit_is_resource_exhausted(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await expect_error(
        stubs.assignments.UpsertAssignment(_upsert(tenant, segment_id, 17 * MIB), timeout=60),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )


async def test_a_call_without_a_valid_token_is_refused_before_its_message_is_read(
    bare_stubs: Stubs, tenant: str
) -> None:
    # Larger than any receive limit the server ever had (64 MiB): were it read, the answer
    # would be RESOURCE_EXHAUSTED.
    request = _upsert(tenant, "gold", 65 * MIB)
    for metadata in ([], [("authorization", "Bearer not-a-token")]):
        await expect_error(
            bare_stubs.assignments.UpsertAssignment(request, metadata=metadata, timeout=60),
            grpc.StatusCode.UNAUTHENTICATED,
            "Invalid access token",
        )
    bulk = assignment_pb2.BulkUpsertAssignmentsRequest(
        tenant=tenant, segment_id="gold", items=[assignment_pb2.BulkUpsertItem(customer_id="a")]
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in bare_stubs.assignments.BulkUpsertAssignments(bulk, timeout=30):
            pass
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest_asyncio.fixture(loop_scope="session")
async def transport_only_store(tmp_path: Path) -> AsyncIterator[Store]:
    """For tests of the transport alone (health calls): they run once, not per database."""
    store = Store(Database(f"sqlite:///{tmp_path / 'unused.db'}"))
    yield store
    await store.close()


@pytest_asyncio.fixture(loop_scope="session")
async def short_limits_server(transport_only_store: Store) -> AsyncIterator[GrpcServer]:
    limits = ServerLimits(
        first_message_timeout_seconds=0.5,
        max_connection_age_seconds=1.0,
        max_connection_age_grace_seconds=1.0,
    )
    verifier = TokenVerifier(secret=TEST_SECRET.encode())
    server = await start_grpc_server(
        transport_only_store, "127.0.0.1", 0, verifier=verifier, limits=limits
    )
    yield server
    await server.stop(0)


async def test_a_client_stream_must_send_its_first_message_in_time(
    short_limits_server: GrpcServer,
) -> None:
    tenant = "acme"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{short_limits_server.port}") as channel:
        stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
        # With a token: the stream is ended once the first message is overdue.
        silent = stub.StreamUpsertAssignments(None, metadata=admin_metadata(tenant), timeout=60)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(silent.read(), 30)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no request message within 0.5 s" in (raised.value.details() or "")
        # Without one: refused at once, without waiting for a message.
        refused = stub.StreamUpsertAssignments(None, timeout=60)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(refused.read(), 30)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _states_seen(
    channel: grpc.aio.Channel, seconds: float, *, until_not_ready: bool = False
) -> set[grpc.ChannelConnectivity]:
    seen = {channel.get_state()}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until_not_ready and seen != {grpc.ChannelConnectivity.READY}:
            break
        state = channel.get_state()
        seen.add(state)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.wait_for_state_change(state), 0.2)
    return seen


async def test_connections_are_rotated_at_their_max_age(short_limits_server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{short_limits_server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        # GOAWAY at the age of 1 s (+ jitter): the channel leaves READY and reconnects.
        seen = await _states_seen(channel, 20, until_not_ready=True)
        assert seen - {grpc.ChannelConnectivity.READY}, seen
        await health.Check(health_pb2.HealthCheckRequest(), timeout=30)


async def test_keepalive_pings_without_calls_are_accepted(transport_only_store: Store) -> None:
    # C-core counts a ping sooner than its minimum interval as a strike (and any ping without a
    # call, unless permitted); the third strike, at the fourth ping, is GOAWAY too_many_pings,
    # and the channel leaves READY. The default interval is 5 s (checked below); a 1 s one
    # makes this test short: pings every 1.1 s for 4.4 s and more.
    verifier = TokenVerifier(secret=TEST_SECRET.encode())
    limits = ServerLimits(min_ping_interval_ms=1000)
    server = await start_grpc_server(
        transport_only_store, "127.0.0.1", 0, verifier=verifier, limits=limits
    )
    options = [
        ("grpc.keepalive_time_ms", 1100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    try:
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(), timeout=30)
            seen = await _states_seen(channel, 7)
            assert seen == {grpc.ChannelConnectivity.READY}, seen
    finally:
        await server.stop(0)


async def test_grpc_connections_over_the_cap_are_not_accepted(
    transport_only_store: Store,
) -> None:
    verifier = TokenVerifier(secret=TEST_SECRET.encode())
    server = await start_grpc_server(
        transport_only_store,
        "127.0.0.1",
        0,
        verifier=verifier,
        limits=ServerLimits(max_connections=1),
    )
    target = f"127.0.0.1:{server.port}"
    check = health_pb2.HealthCheckRequest()
    try:
        # (Channels of one process share connections unless told not to.)
        own = [("grpc.use_local_subchannel_pool", 1)]
        async with (
            grpc.aio.insecure_channel(target, options=own) as first,
            grpc.aio.insecure_channel(target, options=own) as second,
        ):
            await health_pb2_grpc.HealthStub(first).Check(check, timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_pb2_grpc.HealthStub(second).Check(check, timeout=10)
            assert refused.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            await health_pb2_grpc.HealthStub(first).Check(check, timeout=30)
    finally:
        await server.stop(0)


def test_the_flags_reach_the_server_options() -> None:
    settings = Settings(
        grpc_max_receive_mb=20,
        grpc_max_connection_age_seconds=300,
        grpc_max_connection_age_grace_seconds=15,
        max_connections=500,
    )
    options = dict(server_limits(settings).options())
    assert options["grpc.max_receive_message_length"] == 20 * MIB
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 15_000
    assert options["grpc.max_allowed_incoming_connections"] == 500
    defaults = dict(ServerLimits().options())
    assert "grpc.max_connection_age_ms" not in defaults
    # Keepalive pings of common clients (grpc-go, Java: every 10 s or more) are no strikes.
    assert defaults["grpc.http2.min_ping_interval_without_data_ms"] == 5000
    assert defaults["grpc.keepalive_permit_without_calls"] == 1


# REST -----------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def tight_gateway(grpc_server: GrpcServer) -> AsyncIterator[Gateway]:
    limits = HttpLimits(keepalive_seconds=1.0, header_timeout_seconds=0.5, max_connections=3)
    gateway = await start_gateway(
        f"127.0.0.1:{grpc_server.port}", "127.0.0.1", 0, 1.0, limits=limits
    )
    yield gateway
    await gateway.stop()


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (generous timeout)."""
    return await asyncio.wait_for(reader.read(), 30)


async def test_a_request_head_that_never_completes_is_cut_off(tight_gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight_gateway.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    await writer.drain()
    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_an_idle_keepalive_connection_is_closed(tight_gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight_gateway.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await _closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 200") and b'{"status": "UP"}' in answer
    writer.close()


async def test_connections_over_the_cap_get_503_and_are_closed(tight_gateway: Gateway) -> None:
    held = [await asyncio.open_connection("127.0.0.1", tight_gateway.port) for _ in range(3)]
    await asyncio.sleep(0)  # (the server counts them as they are accepted)
    reader, writer = await asyncio.open_connection("127.0.0.1", tight_gateway.port)
    answer = await _closed_by_server(reader)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    assert json.loads(body) == {
        "code": 503,
        "status": "Service Unavailable",
        "message": "Too many open connections; try again later.",
    }
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    # Once they are gone, connections are accepted again.
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            try:
                url = f"http://127.0.0.1:{tight_gateway.port}/healthz"
                async with session.get(url) as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the gateway took no connection after the held ones closed")


async def test_probes_need_no_token_and_readiness_is_503_while_stopping(
    bare_http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    for path in ("/healthz", "/readyz"):
        async with bare_http.get(path) as response:
            assert response.status == 200 and await response.json() == {"status": "UP"}
    # Gateway.stop() sets this first, then closes the port and drains.
    gateway.runner.app[STOPPING].set()
    try:
        async with bare_http.get("/readyz") as response:
            assert response.status == 503
            assert await response.json() == {
                "code": 503,
                "status": "Service Unavailable",
                "message": "The service is stopping.",
            }
        async with bare_http.get("/healthz") as response:
            assert response.status == 200
    finally:
        gateway.runner.app[STOPPING].clear()


def test_accept_errors_are_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        log_accept_errors_once(loop)
        with caplog.at_level(logging.ERROR, logger="customer_segments.gateway.http_server"):
            for _ in range(1000):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                    }
                )
        lines = [r for r in caplog.records if "cannot accept REST connections" in r.message]
        assert len(lines) == 1 and "Too many open files" in lines[0].message
    finally:
        loop.close()
