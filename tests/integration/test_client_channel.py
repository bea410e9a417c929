"""The client's channel: retries, deadlines and TLS, against a tiny gRPC server on loopback
that fails on purpose (no database: what is tested is the client's side)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from customersegment.v1 import (
    assignment_pb2,
    assignment_pb2_grpc,
    segment_pb2,
    segment_pb2_grpc,
)

from customer_segments.client import (
    BulkUpsertItem,
    CustomerSegmentsClient,
    DeadlineExceeded,
    RetryPolicy,
    TlsConfig,
    Unavailable,
)
from tests.certificates import Pem, issue

FAILURES_BEFORE_SUCCESS = 2


class FlakySegments(segment_pb2_grpc.SegmentServiceServicer):
    """GetSegment is UNAVAILABLE twice, then answers; CreateSegment is always UNAVAILABLE;
    ListSegments never answers."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.tokens: list[str] = []
        self.never = asyncio.Event()

    async def GetSegment(self, request: Any, context: Any) -> segment_pb2.GetSegmentResponse:
        self.attempts["GetSegment"] += 1
        self.tokens.append(dict(context.invocation_metadata()).get("authorization", ""))
        if self.attempts["GetSegment"] <= FAILURES_BEFORE_SUCCESS:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return segment_pb2.GetSegmentResponse(
            segment=segment_pb2.Segment(
                id=request.segment_id, name={"en": "Gold"}, site_code="main"
            )
        )

    async def CreateSegment(self, request: Any, context: Any) -> segment_pb2.CreateSegmentResponse:
        self.attempts["CreateSegment"] += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        raise AssertionError("abort returns only by raising")

    async def ListSegments(self, request: Any, context: Any) -> segment_pb2.ListSegmentsResponse:
        self.attempts["ListSegments"] += 1
        await self.never.wait()
        return segment_pb2.ListSegmentsResponse()


class FlakyAssignments(assignment_pb2_grpc.CustomerAssignmentServiceServicer):
    """StreamUpsertAssignments is UNAVAILABLE; BulkUpsertAssignments never answers."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.never = asyncio.Event()

    async def BulkUpsertAssignments(
        self, request: Any, context: Any
    ) -> AsyncIterator[assignment_pb2.BulkUpsertAssignmentsResponse]:
        await self.never.wait()
        yield assignment_pb2.BulkUpsertAssignmentsResponse()

    async def StreamUpsertAssignments(
        self, requests: Any, context: Any
    ) -> AsyncIterator[assignment_pb2.StreamUpsertAssignmentsResponse]:
        self.attempts["StreamUpsertAssignments"] += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        yield assignment_pb2.StreamUpsertAssignmentsResponse()


class Flaky:
    def __init__(self, segments: FlakySegments, assignments: FlakyAssignments, port: int) -> None:
        self.segments = segments
        self.assignments = assignments
        self.target = f"127.0.0.1:{port}"


@pytest_asyncio.fixture(loop_scope="session")
async def flaky() -> AsyncIterator[Flaky]:
    server = grpc.aio.server()
    # Only the RPCs the tests call are implemented (the stubs mark every RPC abstract; the
    # generated base answers the others UNIMPLEMENTED).
    segments, assignments = FlakySegments(), FlakyAssignments()  # type: ignore[abstract]
    segment_pb2_grpc.add_SegmentServiceServicer_to_server(segments, server)
    assignment_pb2_grpc.add_CustomerAssignmentServiceServicer_to_server(assignments, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Flaky(segments, assignments, port)
    segments.never.set()
    assignments.never.set()
    await server.stop(0)


async def test_an_idempotent_call_is_retried_on_unavailable(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target, token="t0k3n") as client:
        segment = await client.get_segment("acme", "gold")
    assert segment.id == "gold"
    assert flaky.segments.attempts["GetSegment"] == FAILURES_BEFORE_SUCCESS + 1
    assert flaky.segments.tokens == ["Bearer t0k3n"] * (FAILURES_BEFORE_SUCCESS + 1)


async def test_retries_end_after_max_attempts(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target, retry=RetryPolicy(max_attempts=2)) as client:
        with pytest.raises(Unavailable) as raised:
            await client.get_segment("acme", "gold")
    assert raised.value.message == "warming up"
    assert flaky.segments.attempts["GetSegment"] == 2


async def test_without_a_retry_policy_nothing_is_retried(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target, retry=None) as client:
        with pytest.raises(Unavailable):
            await client.get_segment("acme", "gold")
    assert flaky.segments.attempts["GetSegment"] == 1


async def test_calls_that_are_not_idempotent_are_not_retried(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target) as client:
        with pytest.raises(Unavailable):
            await client.create_segment("acme", name={"en": "Gold"}, site_code="main")
        with pytest.raises(Unavailable):
            async for _ in client.stream_upsert_assignments("acme", "gold", [BulkUpsertItem("c")]):
                pass
    assert flaky.segments.attempts["CreateSegment"] == 1
    assert flaky.assignments.attempts["StreamUpsertAssignments"] == 1


async def test_every_call_has_the_default_deadline(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target, timeout=0.05) as client:
        with pytest.raises(DeadlineExceeded):
            await client.list_segments("acme")


async def test_bulk_calls_have_the_bulk_deadline(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target, timeout=3600, bulk_timeout=0.05) as client:
        with pytest.raises(DeadlineExceeded):
            async for _ in client.bulk_upsert_assignments("acme", "gold", [BulkUpsertItem("c")]):
                pass


async def test_a_call_overrides_the_deadline(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target, timeout=3600) as client:
        with pytest.raises(DeadlineExceeded):
            await client.list_segments("acme", timeout=0.05)


# TLS ----------------------------------------------------------------------------------------


class Tls:
    def __init__(self, ca: Pem, port: int) -> None:
        self.ca = ca
        self.client = issue("internal-caller", ca)
        self.target = f"127.0.0.1:{port}"


@pytest_asyncio.fixture(loop_scope="session")
async def tls_server() -> AsyncIterator[Tls]:
    """A server that wants TLS with a client certificate signed by its CA (mutual TLS)."""
    ca = issue("test CA", None)
    # Named for its DNS name only, so that a client on 127.0.0.1 must say which name it expects.
    server_pem = issue("segments", ca, [x509.DNSName("segments.internal")])
    server = grpc.aio.server()
    segments = FlakySegments()  # type: ignore[abstract]  # only GetSegment is called
    segments.attempts["GetSegment"] = FAILURES_BEFORE_SUCCESS  # answers at once
    segment_pb2_grpc.add_SegmentServiceServicer_to_server(segments, server)
    credentials = grpc.ssl_server_credentials(
        [(server_pem.key_pem, server_pem.certificate_pem)],
        root_certificates=ca.certificate_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield Tls(ca, port)
    await server.stop(0)


async def test_mutual_tls_with_a_tls_config(tls_server: Tls, tmp_path: Path) -> None:
    # The CA as a file, the client's pair as bytes: both forms are accepted.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(tls_server.ca.certificate_pem)
    tls = TlsConfig(
        ca_certificate=ca_file,
        client_certificate=tls_server.client.certificate_pem,
        client_key=tls_server.client.key_pem,
        server_name="segments.internal",
    )
    async with CustomerSegmentsClient(tls_server.target, tls=tls) as client:
        assert (await client.get_segment("acme", "gold")).id == "gold"


async def test_channel_credentials_are_used_as_given(tls_server: Tls) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_server.ca.certificate_pem,
        private_key=tls_server.client.key_pem,
        certificate_chain=tls_server.client.certificate_pem,
    )
    async with CustomerSegmentsClient(
        tls_server.target,
        tls=credentials,
        channel_options=[("grpc.ssl_target_name_override", "segments.internal")],
    ) as client:
        assert (await client.get_segment("acme", "gold")).id == "gold"


async def test_tls_without_the_servers_ca_is_refused(tls_server: Tls) -> None:
    # The system's roots do not know the test CA: the handshake fails, and it is not retried
    # into a success.
    async with CustomerSegmentsClient(tls_server.target, tls=True, retry=None) as client:
        with pytest.raises(Unavailable):
            await client.get_segment("acme", "gold", timeout=60)


async def test_plaintext_towards_a_tls_server_fails(tls_server: Tls) -> None:
    async with CustomerSegmentsClient(tls_server.target, retry=None) as client:
        with pytest.raises(Unavailable):
            await client.get_segment("acme", "gold", timeout=60)
