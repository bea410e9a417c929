"""The client's retries and deadlines, against a tiny gRPC server on loopback that fails on
purpose (no database: what is tested is the client's channel)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from customersegment.v1 import (
    assignment_pb2_grpc,
    common_pb2,
    segment_pb2,
    segment_pb2_grpc,
)

from customer_segments.client import (
    BulkUpsertItem,
    CustomerSegmentsClient,
    DeadlineExceeded,
    RetryPolicy,
    Unavailable,
)

FAILURES_BEFORE_SUCCESS = 2


class FlakySegments(segment_pb2_grpc.SegmentServiceServicer):
    """GetSegment is UNAVAILABLE twice, then answers; CreateSegment is always UNAVAILABLE;
    ListSegments never answers."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.tokens: list[str] = []
        self.never = asyncio.Event()

    async def GetSegment(self, request: Any, context: Any) -> segment_pb2.Segment:
        self.attempts["GetSegment"] += 1
        self.tokens.append(dict(context.invocation_metadata()).get("authorization", ""))
        if self.attempts["GetSegment"] <= FAILURES_BEFORE_SUCCESS:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return segment_pb2.Segment(id=request.segment_id, name={"en": "Gold"}, site_code="main")

    async def CreateSegment(self, request: Any, context: Any) -> segment_pb2.Segment:
        self.attempts["CreateSegment"] += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        raise AssertionError("abort returns only by raising")

    async def ListSegments(self, request: Any, context: Any) -> segment_pb2.ListSegmentsResponse:
        self.attempts["ListSegments"] += 1
        await self.never.wait()
        return segment_pb2.ListSegmentsResponse()


class FlakyAssignments(assignment_pb2_grpc.CustomerAssignmentServiceServicer):
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    async def StreamUpsertAssignments(
        self, requests: Any, context: Any
    ) -> AsyncIterator[common_pb2.BulkItemResults]:
        self.attempts["StreamUpsertAssignments"] += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        yield common_pb2.BulkItemResults()


class Flaky:
    def __init__(self, segments: FlakySegments, assignments: FlakyAssignments, port: int) -> None:
        self.segments = segments
        self.assignments = assignments
        self.target = f"127.0.0.1:{port}"


@pytest_asyncio.fixture(loop_scope="session")
async def flaky() -> AsyncIterator[Flaky]:
    server = grpc.aio.server()
    segments, assignments = FlakySegments(), FlakyAssignments()
    segment_pb2_grpc.add_SegmentServiceServicer_to_server(segments, server)
    assignment_pb2_grpc.add_CustomerAssignmentServiceServicer_to_server(assignments, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Flaky(segments, assignments, port)
    segments.never.set()
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


async def test_a_call_overrides_the_deadline(flaky: Flaky) -> None:
    async with CustomerSegmentsClient(flaky.target, timeout=3600) as client:
        with pytest.raises(DeadlineExceeded):
            await client.list_segments("acme", timeout=0.05)
