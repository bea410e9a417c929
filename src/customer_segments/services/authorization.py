"""Who may do what: the scopes of each operation (as the Emporix file lists them) and the
tenant a token is bound to. The customer's own view is applied by the read use cases."""

from __future__ import annotations

from customer_segments.domain.errors import PermissionDenied
from customer_segments.domain.principal import Principal, Scope

_READ = frozenset({Scope.READ})
_READ_OR_OWN = frozenset({Scope.READ, Scope.READ_OWN})
_MANAGE = frozenset({Scope.MANAGE})

# Operation (the RPC name) -> scopes of which the token needs at least one.
OPERATION_SCOPES: dict[str, frozenset[Scope]] = {
    "GetAssignment": _READ,
    "ListAssignments": _READ_OR_OWN,
    "SearchAssignments": _READ,
    "UpsertAssignment": _MANAGE,
    "RemoveAssignment": _MANAGE,
    "BulkUpsertAssignments": _MANAGE,
    "BulkRemoveAssignments": _MANAGE,
    "StreamUpsertAssignments": _MANAGE,
    "StreamRemoveAssignments": _MANAGE,
    "CreateSegment": _MANAGE,
    "UpsertSegment": _MANAGE,
    "PatchSegment": _MANAGE,
    "GetSegment": _READ_OR_OWN,
    "ListSegments": _READ_OR_OWN,
    "DeleteSegment": _MANAGE,
    # The directory is fed by internal services that manage assignments.
    "UpsertCustomer": _MANAGE,
    "UpsertLegalEntity": _MANAGE,
}
WRITE_OPERATIONS = frozenset(
    operation for operation, scopes in OPERATION_SCOPES.items() if scopes == _MANAGE
)


def require_scope(principal: Principal, operation: str) -> None:
    """PermissionDenied unless the token holds a scope of `operation`. An operation missing
    from the table is denied: a new RPC stays closed until it is listed."""
    allowed = OPERATION_SCOPES.get(operation, frozenset())
    if not any(principal.has(scope) for scope in allowed):
        needed = " or ".join(sorted(scope.value for scope in allowed)) or "an unknown scope"
        raise PermissionDenied(f"The access token lacks the scope {needed}.")


def require_tenant(principal: Principal, tenant: str) -> None:
    if principal.tenant != tenant:
        raise PermissionDenied(f"The access token is not valid for tenant '{tenant}'.")


def require_customer(principal: Principal) -> str:
    """The customer id of a customer token (its `sub`)."""
    if not principal.subject:
        raise PermissionDenied("A customer access token must name the customer (claim 'sub').")
    return principal.subject
