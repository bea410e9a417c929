"""Domain errors -> gRPC status codes with google.rpc.Status details: ErrorInfo always (the
reason and domain of domain/errors.py), BadRequest naming the field, PreconditionFailure for a
version conflict, RetryInfo where waiting and retrying helps."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from customer_segments.domain.errors import (
    ERROR_DOMAIN,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unauthenticated,
    Unavailable,
    VersionConflict,
)

_CODES: list[tuple[type[DomainError], code_pb2.Code.ValueType]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (VersionConflict, code_pb2.ABORTED),
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (Unauthenticated, code_pb2.UNAUTHENTICATED),
    (PermissionDenied, code_pb2.PERMISSION_DENIED),
    (Unavailable, code_pb2.UNAVAILABLE),
]

# PreconditionFailure.Violation.type of a version conflict.
VERSION_PRECONDITION = "VERSION"

# A status travels in trailing metadata, which clients refuse beyond 8 KiB by default: the
# message appears twice there (grpc-message, percent-encoded, and grpc-status-details-bin,
# base64), so the texts that can echo a caller's value are cut. With these, even four-byte
# characters throughout stay under 7 KiB; a valid id (255 characters) is never cut.
MAX_MESSAGE_CHARS = 240
MAX_RESOURCE_ID_CHARS = 255


def _bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _details(error: DomainError) -> list[Message]:
    """ErrorInfo with the context a caller may see (the ids it sent, for its own tenant),
    then the detail of the error's kind."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    resource_id = getattr(error, "resource_id", None)
    if resource_id:
        info.metadata["resourceId"] = _bounded(resource_id, MAX_RESOURCE_ID_CHARS)
    resource_type = getattr(error, "resource_type", None)
    if resource_type:
        info.metadata["resourceType"] = resource_type
    details: list[Message] = [info]
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=_bounded(error.field), description=_bounded(error.problem)
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    elif isinstance(error, VersionConflict):
        for name, version in (("expectedVersion", error.expected), ("actualVersion", error.actual)):
            if version is not None:
                info.metadata[name] = str(version)
        failure = error_details_pb2.PreconditionFailure.Violation(
            type=VERSION_PRECONDITION,
            subject=_bounded(f"{error.resource_type} {error.resource_id}"),
            description=error.description,
        )
        details.append(error_details_pb2.PreconditionFailure(violations=[failure]))
    elif isinstance(error, Unavailable):
        delay = duration_pb2.Duration(seconds=error.retry_after_seconds)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return details


def to_status(error: DomainError) -> grpc.Status:
    code = next(
        (error_code for error_type, error_code in _CODES if isinstance(error, error_type)),
        code_pb2.INTERNAL,
    )
    details = [_packed(detail) for detail in _details(error)]
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=_bounded(error.message), details=details)
    )


INTERNAL_MESSAGE = "Internal error; the server log has the details."


def internal_status() -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=Reason.INTERNAL, domain=ERROR_DOMAIN)
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE, details=[_packed(info)])
    )
