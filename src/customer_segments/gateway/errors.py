"""Emporix error bodies, and gRPC status codes -> HTTP by the canonical mapping."""

from __future__ import annotations

import math
import re
from http import HTTPStatus
from typing import Any, NamedTuple

import grpc
from aiohttp import web
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from customer_segments.domain.errors import ERROR_DOMAIN

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

# The one table of proto field paths (as the service's BadRequest names them) -> the REST
# body's paths, for the names that differ beyond the proto3 JSON rule. `[]` stands for any
# index, kept in place; the longest listed prefix of a path applies, and the parts after it
# (and every unlisted path) are lowerCamelCased, as the proto3 JSON mapping names them.
REST_FIELD_PATHS: dict[str, str] = {
    "mixins_json": "mixins",
    "metadata_mixins_json": "metadata.mixins",
    # A segment request's `segment` is the REST body itself.
    "segment": "",
    "segment.mixins_json": "mixins",
    "segment.metadata.mixins_json": "metadata.mixins",
    "segment.validity.start_time": "validity.from",
    "segment.validity.end_time": "validity.to",
    # A webhook request's `webhook` is the REST body itself.
    "webhook": "",
    # PatchSegment's operations are the REST body (a JSON Patch array) itself.
    "operations[]": "[]",
    "operations[].value_json": "[].value",
}
_INDEX = re.compile(r"\[\d+\]")
_SNAKE = re.compile(r"_([a-z0-9])")


def rest_field(field: str) -> str:
    """`customer_id` -> `customerId`, `operations[2].path` -> `[2].path`: the REST name of a
    proto field path, by REST_FIELD_PATHS."""
    indexes = iter(_INDEX.findall(field))
    parts = _INDEX.sub("[]", field).split(".")
    for cut in range(len(parts), 0, -1):
        listed = REST_FIELD_PATHS.get(".".join(parts[:cut]))
        if listed is not None:
            head, rest = ([listed] if listed else []), parts[cut:]
            break
    else:
        head, rest = [], parts
    camel = [_SNAKE.sub(lambda match: match.group(1).upper(), part) for part in rest]
    template = ".".join(head + camel).replace(".[]", "[]")
    return re.sub(r"\[\]", lambda _: next(indexes, "[]"), template) or "body"


def field_message(field: str, problem: str) -> str:
    """What a REST answer says about a proto field path: `mixins: must be a JSON object`."""
    return f"{rest_field(field)}: {problem}"


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


def error_response(
    code: int, message: str, *, retry_after: int | None = None, **details: str | None
) -> web.Response:
    if code == 401:
        return web.json_response(UNAUTHORIZED_BODY, status=401)
    # 503 (the database or the server is away), 429 (slow down): worth retrying shortly.
    headers = None
    if code in (429, 503):
        headers = {"Retry-After": str(retry_after or DEFAULT_RETRY_AFTER_SECONDS)}
    return web.json_response(error_body(code, message, **details), status=code, headers=headers)


DEFAULT_RETRY_AFTER_SECONDS = 1
# A 503 not reported by the service itself (gRPC could not reach it, or refused the call).
UNAVAILABLE_MESSAGE = "The service is unavailable; retry later."
# How gRPC reports a message over a size limit, on either end (the first number is the size).
_MESSAGE_TOO_LARGE = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")
# gRPC's own RESOURCE_EXHAUSTED over a size limit of the gateway's making (its message or its
# metadata), as opposed to the server refusing calls beyond max_concurrent_rpcs.
_SIZE_LIMIT = re.compile(r"larger than max|size exceeds limit")


class RestFailure(NamedTuple):
    """What the REST answer to a failed gRPC call says."""

    code: int
    message: str
    resource_id: str | None = None
    field: str | None = None
    problem: str | None = None
    retry_after: int | None = None

    def response(self) -> web.Response:
        return error_response(
            self.code,
            self.message,
            retry_after=self.retry_after,
            resource_id=self.resource_id,
            field=self.field,
            problem=self.problem,
        )


class ServiceDetails(NamedTuple):
    """The google.rpc.Status details the service attached to a failed call: `info` None when
    the failure is not the service's own (gRPC's, or another server's)."""

    info: error_details_pb2.ErrorInfo | None
    violation: error_details_pb2.BadRequest.FieldViolation | None
    retry_after: int | None

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError) -> ServiceDetails:
        info = violation = retry_after = None
        for detail in _status_details(error):
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violation = next(iter(bad_request.field_violations), None)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                delay = retry.retry_delay
                retry_after = max(1, math.ceil(delay.seconds + delay.nanos / 1e9))
        if info is not None and info.domain != ERROR_DOMAIN:
            info = None
        return cls(info, violation, retry_after)


def from_rpc_error(
    error: grpc.aio.AioRpcError,
    rest_names: dict[str, str] | None = None,
    request_bytes: int | None = None,
    *,
    conditional: bool = False,
) -> web.Response:
    return rest_failure(error, rest_names, request_bytes, conditional=conditional).response()


def rest_failure(
    error: grpc.aio.AioRpcError,
    rest_names: dict[str, str] | None = None,
    request_bytes: int | None = None,
    *,
    conditional: bool = False,
) -> RestFailure:
    """The REST answer to a failed gRPC call, with the field and resource it names.
    `rest_names`: REST names of proto fields that depend on the request (which query
    parameter carried a cursor), before REST_FIELD_PATHS. `request_bytes`, the size of the
    request sent, tells a request too large from an answer too large when gRPC refuses a
    message. `conditional`: the version the call expected came from If-Match, so a version
    conflict, or a resource (or segment) that does not exist, is 412 (RFC 9110: If-Match never
    holds without a current representation); the body's metadata.version keeps its 409."""
    details = ServiceDetails.of(error)
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and details.info is None:
        return _refused_by_grpc(error, request_bytes)
    code = HTTP_STATUS_OF.get(error.code(), 500)
    if conditional and error.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND):
        code = 412
    message = error.details() or HTTPStatus(code if code != 499 else 400).phrase
    if code >= 500 and details.info is None:
        # Never pass on gRPC's own words: its UNAVAILABLE names the addresses it tried
        # ("ipv4:10.0.0.5:50051: Connection refused").
        message = UNAVAILABLE_MESSAGE if code == 503 else "Internal error"
    elif code >= 500 and code != 503:
        message = "Internal error"  # the service's own 503 texts are written for callers
    resource_id = details.info.metadata.get("resourceId") if details.info else None
    field = problem = None
    if details.violation is not None:
        proto_field = details.violation.field
        field = (rest_names or {}).get(proto_field) or rest_field(proto_field)
        problem = message = f"{field}: {details.violation.description}"
    return RestFailure(code, message, resource_id, field, problem, details.retry_after)


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


def _refused_by_grpc(error: grpc.aio.AioRpcError, request_bytes: int | None) -> RestFailure:
    """gRPC's own RESOURCE_EXHAUSTED. A request too large is 413; an answer or metadata too
    large is the gateway's or the service's fault (500; pages are cut to fit, see limits.py);
    anything else is a server refusing calls beyond its limits (max_concurrent_rpcs): 503,
    since it is the service, not this caller, that is overloaded."""
    details = error.details() or ""
    too_large = _MESSAGE_TOO_LARGE.search(details)
    if too_large and request_bytes is not None and int(too_large[1]) == request_bytes:
        return RestFailure(
            413,
            f"The request is {request_bytes} bytes once encoded for the service, which accepts "
            f"at most {too_large[2]}.",
        )
    if _SIZE_LIMIT.search(details):
        return RestFailure(500, "Internal error")
    return RestFailure(503, UNAVAILABLE_MESSAGE)
