"""Domain errors -> gRPC status codes with google.rpc.Status details (ErrorInfo, BadRequest)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from customer_segments.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    VersionConflict,
)

ERROR_DOMAIN = "customersegment.v1"

_CODES: list[tuple[type[DomainError], code_pb2.Code.ValueType, str]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    (NotFound, code_pb2.NOT_FOUND, "NOT_FOUND"),
    (VersionConflict, code_pb2.ABORTED, "VERSION_MISMATCH"),
    (AlreadyExists, code_pb2.ALREADY_EXISTS, "ALREADY_EXISTS"),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    (Unauthenticated, code_pb2.UNAUTHENTICATED, "INVALID_TOKEN"),
    (PermissionDenied, code_pb2.PERMISSION_DENIED, "PERMISSION_DENIED"),
    (Unavailable, code_pb2.UNAVAILABLE, "UNAVAILABLE"),
]


# A status travels in trailing metadata, which clients refuse beyond 8 KiB by default: the
# message appears twice there (grpc-message, percent-encoded, and grpc-status-details-bin,
# base64), so the texts that can echo a caller's value are cut. With these, even four-byte
# characters throughout stay under 7 KiB; a valid id (255 characters) is never cut.
MAX_MESSAGE_CHARS = 240
MAX_RESOURCE_ID_CHARS = 255


def _bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _packed(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: DomainError) -> grpc.Status:
    code, reason = code_pb2.INTERNAL, "INTERNAL"
    for error_type, error_code, error_reason in _CODES:
        if isinstance(error, error_type):
            code, reason = error_code, error_reason
            break
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    resource_id = getattr(error, "resource_id", None)
    if resource_id:
        info.metadata["resourceId"] = _bounded(resource_id, MAX_RESOURCE_ID_CHARS)
    if isinstance(error, NotFound):
        info.metadata["resourceType"] = error.resource_type
    details = [_packed(info)]
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=_bounded(error.field), description=_bounded(error.problem)
        )
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=_bounded(error.message), details=details)
    )


INTERNAL_MESSAGE = "Internal error; the server log has the details."


def internal_status() -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE, details=[_packed(info)])
    )
