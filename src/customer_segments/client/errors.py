"""Typed exceptions of the client: one per gRPC status code a caller handles differently, each
carrying the server's google.rpc.ErrorInfo (reason, domain, metadata) and BadRequest field
violations from the status details (grpc-status-details-bin)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import grpc
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    # The request field, as the server names it (e.g. `mixins_json`, `q`, `items[3].customer_id`).
    field: str
    description: str


class CustomerSegmentsError(Exception):
    """A call failed. `reason` is ErrorInfo's machine-readable cause (e.g. SEGMENT_NOT_FOUND);
    None when the server sent no ErrorInfo (e.g. a proxy or gRPC itself answered)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str | None = None,
        domain: str | None = None,
        metadata: Mapping[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self.field_violations = field_violations


class InvalidArgument(CustomerSegmentsError):
    """The request is wrong; `field_violations` name the fields."""


class NotFound(CustomerSegmentsError):
    pass


class AlreadyExists(CustomerSegmentsError):
    pass


class Conflict(CustomerSegmentsError):
    """ABORTED: the stored version is not the expected one, or a write that must find its
    resource did not (reason VERSION_MISMATCH and the like). Read again, then decide."""


class FailedPrecondition(CustomerSegmentsError):
    """The state forbids the call (e.g. deleting a segment that has assignments, without force)."""


class Unauthenticated(CustomerSegmentsError):
    pass


class PermissionDenied(CustomerSegmentsError):
    pass


class ResourceExhausted(CustomerSegmentsError):
    """A limit was hit (too many calls or too large a message)."""


class Unavailable(CustomerSegmentsError):
    """The service (or its database) could not be reached, after the client's retries of
    idempotent calls."""


class DeadlineExceeded(CustomerSegmentsError):
    pass


class Cancelled(CustomerSegmentsError):
    pass


class Internal(CustomerSegmentsError):
    pass


_BY_CODE: dict[grpc.StatusCode, type[CustomerSegmentsError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def _status_details(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    # grpc-stubs types metadata entries loosely; each is a (key, value) pair.
    entries: Iterable[tuple[str, str | bytes]] = error.trailing_metadata() or ()  # type: ignore[assignment]
    for key, value in entries:
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # a damaged detail must not hide the error itself
                return None
            # Details that belong to another code than the call's are not this error's.
            return status if status.code == error.code().value[0] else None
    return None


def from_rpc_error(error: grpc.aio.AioRpcError) -> CustomerSegmentsError:
    """The typed exception for a failed call."""
    code = error.code()
    reason = domain = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    status = _status_details(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            ]
    error_type = _BY_CODE.get(code, CustomerSegmentsError)
    return error_type(
        code,
        error.details() or "",
        reason=reason or None,
        domain=domain or None,
        metadata=metadata,
        field_violations=tuple(violations),
    )
