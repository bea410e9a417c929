"""Domain errors. Transports translate them (gRPC status codes, Emporix REST error bodies)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller may see; `message` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """Bad input. `field` names the offending request field (dotted path)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(DomainError):
    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(f"The {resource_type} with id {resource_id} has not been found.")
        self.resource_type = resource_type
        self.resource_id = resource_id


class VersionConflict(DomainError):
    """The caller's `metadata.version` is not the stored one (optimistic locking)."""

    def __init__(self, resource_id: str) -> None:
        super().__init__("The resource you are attempting to access has changed.")
        self.resource_id = resource_id


class AlreadyExists(DomainError):
    def __init__(self, resource_id: str) -> None:
        super().__init__("The resource already exists.")
        self.resource_id = resource_id


class FailedPrecondition(DomainError):
    def __init__(self, message: str, resource_id: str) -> None:
        super().__init__(message)
        self.resource_id = resource_id


class Unauthenticated(DomainError):
    """No token, or one that is malformed, expired or badly signed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid access token: {reason}")


class PermissionDenied(DomainError):
    """A valid token that may not do this: another tenant, a missing scope, or a customer asking
    for more than their own assignments."""


class Unavailable(DomainError):
    """The database cannot be reached or is busy beyond its limits: the call may succeed when
    retried a little later (gRPC UNAVAILABLE, REST 503 with Retry-After)."""

    def __init__(self, message: str = "The database is unavailable; retry later.") -> None:
        super().__init__(message)
