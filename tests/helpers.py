"""Small assertions shared by the tests."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, *fragments: str
) -> grpc.aio.AioRpcError:
    """Awaits a call that must fail with `code` and a message containing every fragment."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = raised.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    for fragment in fragments:
        assert fragment in (error.details() or ""), error.details()
    return error


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by the google.rpc.BadRequest detail of an error."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [violation.field for violation in bad_request.field_violations]
    return fields


def loads(text: str) -> Any:
    return json.loads(text)
