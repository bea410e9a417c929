"""Every gRPC call's request id: the caller's or a made one, echoed in the trailing metadata (errors
included) and
on the call's access line, which also names a call refused before its handler ran."""

from __future__ import annotations

import asyncio
import logging
import re

import grpc
import pytest
from customersegment.v1 import segment_pb2

from tests.conftest import Stubs
from tests.helpers import bearer, expect_error

ACCESS = "customer_segments.access"


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The access lines of ListSegments calls (a call of an earlier test still ending on the
    same server may log its line meanwhile)."""
    return [
        record
        for record in caplog.records
        if record.name == ACCESS and record.__dict__["grpc_method"].endswith("/ListSegments")
    ]


async def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The access lines once one is there: a refusal's status reaches the caller as the server
    aborts, before the server's wrapper writes the line (the race made CI fail once)."""
    for _ in range(200):
        if lines := _access_lines(caplog):
            return lines
        await asyncio.sleep(0.01)
    return []


async def test_a_given_request_id_is_echoed_and_logged(
    bare_stubs: Stubs, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS):
        call = bare_stubs.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(tenant=tenant),
            metadata=(("authorization", bearer(tenant)), ("x-request-id", "abc-1")),
        )
        await call
        assert dict(await call.trailing_metadata())["x-request-id"] == "abc-1"
    [line] = _access_lines(caplog)
    fields = line.__dict__
    assert (fields["grpc_method"], fields["grpc_code"], fields["tenant"]) == (
        "/customersegment.v1.SegmentService/ListSegments",
        "OK",
        tenant,
    )
    assert "request_id=abc-1" in line.getMessage()


async def test_a_call_without_one_gets_one_made_and_a_refusal_is_logged(
    bare_stubs: Stubs, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS):
        call = bare_stubs.segments.ListSegments(segment_pb2.ListSegmentsRequest(tenant=tenant))
        with pytest.raises(grpc.aio.AioRpcError):
            await call
        made = str(dict(await call.trailing_metadata())["x-request-id"])
        # within the level's block: the line may be written after the caller has the status
        [line] = await _refusal_lines(caplog)
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert line.__dict__["grpc_code"] == "UNAUTHENTICATED" and line.__dict__["tenant"] is None
    assert f"request_id={made}" in line.getMessage()


async def test_a_request_id_too_long_is_refused_naming_it(bare_stubs: Stubs, tenant: str) -> None:
    await expect_error(
        bare_stubs.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(tenant=tenant),
            metadata=(("authorization", bearer(tenant)), ("x-request-id", "x" * 129)),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "x-request-id",
        "1 to 128",
    )


async def test_an_error_keeps_the_request_id_beside_its_details(
    bare_stubs: Stubs, tenant: str
) -> None:
    call = bare_stubs.segments.GetSegment(
        segment_pb2.GetSegmentRequest(tenant=tenant, segment_id="no-such-segment"),
        metadata=(("authorization", bearer(tenant)), ("x-request-id", "err-1")),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    trailers = dict(await call.trailing_metadata())
    assert trailers["x-request-id"] == "err-1"
    assert "grpc-status-details-bin" in trailers  # the error details are still there


async def test_a_refused_long_request_id_is_answered_with_a_made_one(
    bare_stubs: Stubs, tenant: str
) -> None:
    call = bare_stubs.segments.ListSegments(
        segment_pb2.ListSegmentsRequest(tenant=tenant),
        metadata=(("authorization", bearer(tenant)), ("x-request-id", "x" * 129)),
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    assert re.fullmatch(r"[0-9a-f]{32}", str(dict(await call.trailing_metadata())["x-request-id"]))
