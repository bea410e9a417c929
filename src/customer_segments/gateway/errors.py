"""Emporix error bodies, and gRPC status codes -> HTTP by the canonical mapping."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

# https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto
HTTP_STATUS_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# The API gateway's own answer to a missing or bad token, as Emporix documents it.
UNAUTHORIZED_BODY = {
    "fault": {
        "faultstring": "Invalid access token",
        "detail": {"errorcode": "oauth.v2.InvalidAccessToken"},
    }
}

# Proto field names in error details -> the REST body's names.
_REST_FIELD_NAMES = {
    "mixins_json": "mixins",
    "metadata_mixins_json": "metadata.mixins",
    "segment.mixins_json": "mixins",
    "segment.metadata.mixins_json": "metadata.mixins",
}


def rest_field(field: str) -> str:
    """`items[3].customer_id` -> `customerId`-style names of the REST body; the patch
    operations of PatchSegment (`operations[2].path`) are the REST body itself (`[2].path`)."""
    renamed = _REST_FIELD_NAMES.get(field, field).removeprefix("operations")
    # The gateway writes a REST operation's `value` as PatchSegment's value_json.
    renamed = re.sub(r"^(\[\d+\])\.value_json$", r"\1.value", renamed)
    return re.sub(r"_([a-z])", lambda match: match.group(1).upper(), renamed)


def error_body(
    code: int,
    message: str,
    *,
    resource_id: str | None = None,
    field: str | None = None,
    problem: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "status": HTTPStatus(code).phrase if code != 499 else "Client Closed Request",
        "message": message,
    }
    if resource_id:
        body["resourceId"] = resource_id
    if field:
        body["details"] = {"field": field, "type": "invalid", "message": problem or message}
    return body


def error_response(code: int, message: str, **details: str | None) -> web.Response:
    if code == 401:
        return web.json_response(UNAUTHORIZED_BODY, status=401)
    # 503 (the database or the server is away), 429 (slow down): worth retrying shortly.
    headers = {"Retry-After": "1"} if code in (429, 503) else None
    return web.json_response(error_body(code, message, **details), status=code, headers=headers)


# A 503 not reported by the service itself (gRPC could not reach it).
UNAVAILABLE_MESSAGE = "The service is unavailable; retry later."
# The domain of the ErrorInfo the service attaches to every error it reports itself.
SERVICE_ERROR_DOMAIN = "customersegment.v1"
# How gRPC reports a message over a size limit, on either end (the first number is the size).
_MESSAGE_TOO_LARGE = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")


def from_rpc_error(
    error: grpc.aio.AioRpcError,
    rest_names: dict[str, str] | None = None,
    request_bytes: int | None = None,
    *,
    conditional: bool = False,
) -> web.Response:
    """The REST answer to a failed gRPC call, with the field and resource it names.
    `request_bytes`, the size of the request sent, tells a request too large from an answer
    too large when gRPC refuses a message. `conditional`: the version the call expected came
    from If-Match, so a version conflict, or a resource (or segment) that does not exist, is 412
    (RFC 9110: If-Match never holds without a current representation); the body's
    metadata.version keeps its 409."""
    refused = refused_by_grpc(error, request_bytes)
    if refused is not None:
        return error_response(*refused)
    code = HTTP_STATUS_OF.get(error.code(), 500)
    if conditional and error.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND):
        code = 412
    message = error.details() or HTTPStatus(code if code != 499 else 400).phrase
    if code >= 500:
        # Never pass on what the server kept to itself; nor gRPC's own UNAVAILABLE text,
        # which names the addresses it tried ("ipv4:10.0.0.5:50051: Connection refused").
        message = "Internal error" if code != 503 else UNAVAILABLE_MESSAGE
    resource_id = field = problem = None
    for detail in _status_details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            resource_id = info.metadata.get("resourceId")
            if code == 503 and info.domain == SERVICE_ERROR_DOMAIN:
                message = error.details() or message  # the service's own words
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            if bad_request.field_violations:
                violation = bad_request.field_violations[0]
                field = (rest_names or {}).get(violation.field) or rest_field(violation.field)
                problem = f"{field}: {violation.description}"
                message = problem
    return error_response(code, message, resource_id=resource_id, field=field, problem=problem)


def _status_details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any]:
    """The google.rpc.Status details of a failed call; none when they are missing or do not
    belong to its status code (gRPC itself ended the call, e.g. over a metadata size limit,
    after the server had written details for another code)."""
    try:
        # An AioRpcError is a call; grpc-stubs types neither that nor the answer.
        status: status_pb2.Status | None = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        return []
    return list(status.details) if status is not None else []


def refused_by_grpc(
    error: grpc.aio.AioRpcError, request_bytes: int | None
) -> tuple[int, str] | None:
    """The HTTP status and message when gRPC itself refused a message of the call (413 or
    500), None for any other failure. Only the service's own RESOURCE_EXHAUSTED (with its
    ErrorInfo) means "slow down" (429)."""
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for detail in _status_details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == SERVICE_ERROR_DOMAIN:
                return None
    # gRPC's own: a request too large is 413, an answer too large the service's fault (500;
    # pages are cut to fit, see limits.py).
    too_large = _MESSAGE_TOO_LARGE.search(error.details() or "")
    if too_large and request_bytes is not None and int(too_large[1]) == request_bytes:
        return 413, (
            f"The request is {request_bytes} bytes once encoded for the service, which accepts "
            f"at most {too_large[2]}."
        )
    return 500, "Internal error"
