"""Small assertions shared by the tests."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypedDict, TypeVar

import aiohttp
import grpc
import pytest
from customersegment.v1 import assignment_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from customer_segments.auth.tokens import issue_token
from customer_segments.domain.errors import ERROR_DOMAIN
from customer_segments.domain.principal import Scope

Detail = TypeVar("Detail", bound=Message)


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


def status_details(error: grpc.aio.AioRpcError, kind: type[Detail]) -> list[Detail]:
    """The google.rpc.Status details of an error that are of `kind` (e.g. ErrorInfo)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an AioRpcError is a call
    assert status is not None, "no google.rpc.Status details"
    found: list[Detail] = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


StreamAnswer = TypeVar(
    "StreamAnswer",
    assignment_pb2.StreamUpsertAssignmentsResponse,
    assignment_pb2.StreamRemoveAssignmentsResponse,
)


async def next_results(call: grpc.aio.StreamStreamCall[Any, StreamAnswer]) -> StreamAnswer:
    """The next message of a bulk stream, which must not have ended (grpc-stubs types read()
    as object: it may be EOF)."""
    results = await call.read()
    assert results is not grpc.aio.EOF, "the stream ended"  # type: ignore[attr-defined]
    return results  # type: ignore[return-value]  # read() is typed as object


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by the google.rpc.BadRequest detail of an error."""
    return [
        violation.field
        for bad_request in status_details(error, error_details_pb2.BadRequest)
        for violation in bad_request.field_violations
    ]


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The service's ErrorInfo of an error (exactly one, in the service's domain)."""
    (info,) = status_details(error, error_details_pb2.ErrorInfo)
    assert info.domain == ERROR_DOMAIN, info
    return info


class SegmentFields(TypedDict):
    """The tenant and segment of a request, as keywords to any message that has them."""

    tenant: str
    segment_id: str


class AssignmentFields(SegmentFields):
    customer_id: str


def loads(text: str) -> Any:
    return json.loads(text)


# Access tokens ------------------------------------------------------------------------------

TEST_SECRET = "test-secret-of-the-suite-0123456789abcdef"
ALL_SCOPES = tuple(scope.value for scope in Scope)


def token(
    tenant: str,
    *scopes: str,
    sub: str | None = None,
    legal_entity_id: str | None = None,
    ttl: int = 3600,
) -> str:
    """An HS256 token signed with the suite's secret; all scopes unless some are named."""
    return issue_token(
        TEST_SECRET.encode(),
        tenant=tenant,
        scopes=scopes or ALL_SCOPES,
        subject=sub,
        legal_entity_id=legal_entity_id,
        ttl_seconds=ttl,
    )


def bearer(tenant: str, *scopes: str, **claims: Any) -> str:
    return f"Bearer {token(tenant, *scopes, **claims)}"


def _with_token(details: grpc.aio.ClientCallDetails, tenant: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if "authorization" not in metadata:
        metadata.add("authorization", bearer(tenant))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


# Generic only in grpc-stubs: the runtime classes take no type arguments.
class _UnaryAdminToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, request.tenant), request)


class _ServerStreamingAdminToken(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, request.tenant), request)


def admin_tokens() -> list[Any]:
    """Client interceptors (grpc.aio takes one per kind of call) that give every call without
    a token of its own an all-scopes token for the tenant it names, so that tests of other
    behaviour need not think about tokens. A client stream names its tenant only in messages
    not yet written, so those calls must bring their token: metadata=admin_metadata(tenant)."""
    return [_UnaryAdminToken(), _ServerStreamingAdminToken()]


def admin_metadata(tenant: str) -> list[tuple[str, str]]:
    return [("authorization", bearer(tenant))]


async def admin_token_middleware(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """The REST counterpart of AdminTokens: the tenant is the path's second part."""
    if "Authorization" not in request.headers:
        parts = request.url.path.split("/")
        if len(parts) > 2 and parts[1] == "customer-segment":
            request.headers["Authorization"] = bearer(parts[2])
    return await handler(request)
