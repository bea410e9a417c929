"""Who may do what: the scopes of each use case (as the Emporix file lists them for the
operations that run it) and the tenant a token is bound to. Every use case checks its caller
here before it reads or writes anything, whichever way it is called; the customer's own view
is applied by the read use cases on top."""

from __future__ import annotations

from enum import StrEnum

from customer_segments.domain.errors import PermissionDenied, Reason
from customer_segments.domain.principal import Principal, Scope


class UseCase(StrEnum):
    """The use cases of services/; the value names them in the audit log (the RPC's name where
    an RPC runs just that use case)."""

    GET_ASSIGNMENT = "GetAssignment"
    LIST_ASSIGNMENTS = "ListAssignments"
    SEARCH_ASSIGNMENTS = "SearchAssignments"
    UPSERT_ASSIGNMENT = "UpsertAssignment"
    REMOVE_ASSIGNMENT = "RemoveAssignment"
    BULK_UPSERT_ASSIGNMENTS = "BulkUpsertAssignments"
    BULK_REMOVE_ASSIGNMENTS = "BulkRemoveAssignments"
    CREATE_SEGMENT = "CreateSegment"
    UPSERT_SEGMENT = "UpsertSegment"
    PATCH_SEGMENT = "PatchSegment"
    GET_SEGMENT = "GetSegment"
    LIST_SEGMENTS = "ListSegments"
    DELETE_SEGMENT = "DeleteSegment"
    BULK_CREATE_SEGMENTS = "BulkCreateSegments"
    BULK_UPSERT_SEGMENTS = "BulkUpsertSegments"
    BULK_DELETE_SEGMENTS = "BulkDeleteSegments"
    UPSERT_CUSTOMER = "UpsertCustomer"
    UPSERT_LEGAL_ENTITY = "UpsertLegalEntity"
    CREATE_WEBHOOK = "CreateWebhook"
    LIST_WEBHOOKS = "ListWebhooks"
    GET_WEBHOOK = "GetWebhook"
    UPDATE_WEBHOOK = "UpdateWebhook"
    DELETE_WEBHOOK = "DeleteWebhook"
    LIST_DELIVERIES = "ListDeliveries"
    RETRY_DELIVERY = "RetryDelivery"
    WATCH_EVENTS = "WatchEvents"


# Scope values, so that a check is one set operation on the token's scopes.
_READ = frozenset({Scope.READ.value})
_READ_OR_OWN = frozenset({Scope.READ.value, Scope.READ_OWN.value})
_MANAGE = frozenset({Scope.MANAGE.value})

# Use case -> scopes of which the caller needs at least one. The only table of who may do what.
USE_CASE_SCOPES: dict[UseCase, frozenset[str]] = {
    UseCase.GET_ASSIGNMENT: _READ,
    UseCase.LIST_ASSIGNMENTS: _READ_OR_OWN,
    UseCase.SEARCH_ASSIGNMENTS: _READ,
    UseCase.UPSERT_ASSIGNMENT: _MANAGE,
    UseCase.REMOVE_ASSIGNMENT: _MANAGE,
    UseCase.BULK_UPSERT_ASSIGNMENTS: _MANAGE,
    UseCase.BULK_REMOVE_ASSIGNMENTS: _MANAGE,
    UseCase.CREATE_SEGMENT: _MANAGE,
    UseCase.UPSERT_SEGMENT: _MANAGE,
    UseCase.PATCH_SEGMENT: _MANAGE,
    UseCase.GET_SEGMENT: _READ_OR_OWN,
    UseCase.LIST_SEGMENTS: _READ_OR_OWN,
    UseCase.DELETE_SEGMENT: _MANAGE,
    UseCase.BULK_CREATE_SEGMENTS: _MANAGE,
    UseCase.BULK_UPSERT_SEGMENTS: _MANAGE,
    UseCase.BULK_DELETE_SEGMENTS: _MANAGE,
    # The directory is fed by internal services that manage assignments.
    UseCase.UPSERT_CUSTOMER: _MANAGE,
    UseCase.UPSERT_LEGAL_ENTITY: _MANAGE,
    # Webhooks, reads included: an endpoint's settings and delivery records are an integration's
    # configuration, for those who manage the tenant's segments (as Emporix's webhook settings).
    UseCase.CREATE_WEBHOOK: _MANAGE,
    UseCase.LIST_WEBHOOKS: _MANAGE,
    UseCase.GET_WEBHOOK: _MANAGE,
    UseCase.UPDATE_WEBHOOK: _MANAGE,
    UseCase.DELETE_WEBHOOK: _MANAGE,
    UseCase.LIST_DELIVERIES: _MANAGE,
    UseCase.RETRY_DELIVERY: _MANAGE,
    # Change events show every assignment of the tenant, as a search does.
    UseCase.WATCH_EVENTS: _READ,
}
WRITES = frozenset(use_case for use_case, scopes in USE_CASE_SCOPES.items() if scopes == _MANAGE)

_NO_SCOPE: frozenset[str] = frozenset()

# What a customer token is told about any segment outside its own view: one answer whether the
# segment does not exist, is not active now, or has no assignment of the customer, so that a
# customer cannot probe which segments exist.
OWN_VIEW_ONLY = (
    "A customer access token reads only the active segments its customer is assigned to."
)


def outside_own_view() -> PermissionDenied:
    return PermissionDenied(OWN_VIEW_ONLY, Reason.CUSTOMER_VIEW_ONLY)


def authorize(principal: Principal, use_case: UseCase, tenant: str | None) -> None:
    """PermissionDenied unless the caller holds a scope of `use_case` and, when the call names
    a tenant, is bound to it. A use case missing from the table is denied: a new one stays
    closed until it is listed. (The hot path: one dictionary lookup, one set operation.)"""
    allowed = USE_CASE_SCOPES.get(use_case, _NO_SCOPE)
    if allowed.isdisjoint(principal.scopes):
        needed = " or ".join(sorted(allowed)) or "an unknown scope"
        raise PermissionDenied(f"The access token lacks the scope {needed}.", Reason.SCOPE_MISSING)
    if tenant is not None and principal.tenant != tenant:
        raise _not_valid_for(tenant)


def require_tenant(principal: Principal, tenant: str) -> None:
    if principal.tenant != tenant:
        raise _not_valid_for(tenant)


def _not_valid_for(tenant: str) -> PermissionDenied:
    return PermissionDenied(
        f"The access token is not valid for tenant '{tenant}'.", Reason.TENANT_MISMATCH
    )


def require_customer(principal: Principal) -> str:
    """The customer id of a customer token (its `sub`)."""
    if not principal.subject:
        raise PermissionDenied(
            "A customer access token must name the customer (claim 'sub').",
            Reason.CUSTOMER_VIEW_ONLY,
        )
    return principal.subject
