"""Every gRPC call's request id: the caller's or a made one, echoed in the initial metadata and
on the call's access line, which also names a call refused before its handler ran."""

from __future__ import annotations

import logging
import re

import grpc
import pytest
from customersegment.v1 import segment_pb2

from tests.conftest import Stubs
from tests.helpers import bearer, expect_error

ACCESS = "customer_segments.access"


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS]


async def test_a_given_request_id_is_echoed_and_logged(
    bare_stubs: Stubs, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS):
        call = bare_stubs.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(tenant=tenant),
            metadata=(("authorization", bearer(tenant)), ("x-request-id", "abc-1")),
        )
        await call
        assert dict(await call.initial_metadata())["x-request-id"] == "abc-1"
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
        made = str(dict(await call.initial_metadata())["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    [line] = _access_lines(caplog)
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
