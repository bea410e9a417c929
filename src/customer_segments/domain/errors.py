"""Domain errors. Transports translate them (gRPC status codes, Emporix REST error bodies).

Every error names its `Reason`: what happened, in words a caller can branch on (gRPC sends it
as `google.rpc.ErrorInfo.reason` in the domain ERROR_DOMAIN). The reasons are part of the
API: a new one may be added, an existing one is never renamed (docs/errors.md lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The ErrorInfo domain of every error the service reports itself: DNS-style, as AIP-193 asks,
# and not a host anyone serves from (example. is reserved).
ERROR_DOMAIN = "customersegment.emporix.example"


class Reason(StrEnum):
    """The one table of error reasons (docs/errors.md says when each is given)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # a request field is missing or malformed
    INVALID_QUERY = "INVALID_QUERY"  # `q` does not parse
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # a cursor not made for this listing
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"  # a value beyond a documented limit (size, depth, time)
    SEGMENT_NOT_FOUND = "SEGMENT_NOT_FOUND"
    ASSIGNMENT_NOT_FOUND = "ASSIGNMENT_NOT_FOUND"
    VERSION_MISMATCH = "VERSION_MISMATCH"  # optimistic locking: the stored version differs
    SEGMENT_ALREADY_EXISTS = "SEGMENT_ALREADY_EXISTS"
    SEGMENT_HAS_ASSIGNMENTS = "SEGMENT_HAS_ASSIGNMENTS"  # a delete without force
    WEBHOOK_NOT_FOUND = "WEBHOOK_NOT_FOUND"
    DELIVERY_NOT_FOUND = "DELIVERY_NOT_FOUND"
    DELIVERY_NOT_FAILED = "DELIVERY_NOT_FAILED"  # a retry of a delivery that has not failed
    EVENTS_PRUNED = "EVENTS_PRUNED"  # WatchEvents after a sequence no longer retained
    TOKEN_MISSING = "TOKEN_MISSING"  # no Authorization at all
    TOKEN_INVALID = "TOKEN_INVALID"  # malformed, expired, badly signed, wrong issuer...
    SCOPE_MISSING = "SCOPE_MISSING"  # a valid token without a scope the call needs
    TENANT_MISMATCH = "TENANT_MISMATCH"  # a valid token of another tenant
    CUSTOMER_VIEW_ONLY = "CUSTOMER_VIEW_ONLY"  # a customer token asks beyond its own view
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"  # unreachable, lost, locked: retry
    DATABASE_BUSY = "DATABASE_BUSY"  # no pooled connection in time: retry
    INTERNAL = "INTERNAL"  # a bug; the server log has the details


class DomainError(Exception):
    """Base of every error a caller may see; `message` is safe to show to the caller."""

    reason = Reason.INTERNAL

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    """Bad input. `field` names the offending request field (dotted path)."""

    reason = Reason.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str, reason: Reason | None = None) -> None:
        super().__init__(f"{field}: {problem}", reason)
        self.field = field
        self.problem = problem


def over_limit(field: str, problem: str) -> InvalidArgument:
    """Bad input because a value is beyond a documented limit (LIMIT_EXCEEDED)."""
    return InvalidArgument(field, problem, Reason.LIMIT_EXCEEDED)


_NOT_FOUND_REASONS = {
    "segment": Reason.SEGMENT_NOT_FOUND,
    "customer assignment": Reason.ASSIGNMENT_NOT_FOUND,
    "webhook": Reason.WEBHOOK_NOT_FOUND,
    "webhook delivery": Reason.DELIVERY_NOT_FOUND,
}


class NotFound(DomainError):
    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(
            f"The {resource_type} with id {resource_id} has not been found.",
            _NOT_FOUND_REASONS[resource_type],
        )
        self.resource_type = resource_type
        self.resource_id = resource_id


class VersionConflict(DomainError):
    """The version a write expected is not the stored one (optimistic locking).
    `expected` None: the write expected the resource to exist at any version (If-Match: *);
    `actual` None: the resource does not exist."""

    reason = Reason.VERSION_MISMATCH
    MESSAGE = "The resource you are attempting to access has changed."

    def __init__(
        self, resource_type: str, resource_id: str, expected: int | None, actual: int | None
    ) -> None:
        super().__init__(self.MESSAGE)
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.expected = expected
        self.actual = actual

    @property
    def description(self) -> str:
        wanted = "to exist" if self.expected is None else f"version {self.expected}"
        found = "it does not exist" if self.actual is None else f"version {self.actual}"
        return f"expected {wanted}, found {found}"


class AlreadyExists(DomainError):
    reason = Reason.SEGMENT_ALREADY_EXISTS

    def __init__(self, resource_id: str) -> None:
        super().__init__("The resource already exists.")
        self.resource_id = resource_id


class FailedPrecondition(DomainError):
    def __init__(self, message: str, resource_id: str, reason: Reason) -> None:
        super().__init__(message, reason)
        self.resource_id = resource_id


class Unauthenticated(DomainError):
    """No token, or one that is malformed, expired or badly signed."""

    reason = Reason.TOKEN_INVALID

    def __init__(self, problem: str, reason: Reason | None = None) -> None:
        super().__init__(f"Invalid access token: {problem}", reason)


class PermissionDenied(DomainError):
    """A valid token that may not do this: another tenant, a missing scope, or a customer asking
    for more than their own assignments."""

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message, reason)


class Unavailable(DomainError):
    """The database cannot be reached or is busy beyond its limits: the call may succeed when
    retried a little later (gRPC UNAVAILABLE with RetryInfo, REST 503 with Retry-After)."""

    reason = Reason.DATABASE_UNAVAILABLE
    # How long a caller should wait before retrying (RetryInfo, Retry-After).
    retry_after_seconds = 1

    def __init__(
        self,
        message: str = "The database is unavailable; retry later.",
        reason: Reason | None = None,
    ) -> None:
        super().__init__(message, reason)


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """Why one item of a bulk call failed, in the parts its single call's error would carry
    (status message, ErrorInfo reason, BadRequest field and description), so that a transport
    can name the field in its own words without reading the message."""

    message: str
    reason: Reason
    field: str = ""  # the offending request field (a dotted path); empty when none is named
    problem: str = ""  # what is wrong with `field`

    @classmethod
    def of(cls, error: DomainError) -> ItemFailure:
        if isinstance(error, InvalidArgument):
            return cls(error.message, error.reason, error.field, error.problem)
        return cls(error.message, error.reason)


# An item the database refused for a reason that is not the caller's (the log has it).
ITEM_NOT_WRITTEN = ItemFailure("The item could not be written.", Reason.INTERNAL)
