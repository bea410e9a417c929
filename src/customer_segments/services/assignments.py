"""Use cases of single customer assignments."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain import validation
from customer_segments.domain.assignment import (
    Assignment,
    AssignmentKey,
    AssignmentWrite,
    UpsertOutcome,
    is_creation,
)
from customer_segments.domain.errors import (
    InvalidArgument,
    NotFound,
    VersionConflict,
)
from customer_segments.domain.listing import Page
from customer_segments.domain.principal import Principal
from customer_segments.query.syntax import Compare, Condition, Field, FieldKind, IsNull, Operator
from customer_segments.services.audit import authorized_write
from customer_segments.services.authorization import (
    UseCase,
    authorize,
    outside_own_view,
    require_customer,
)
from customer_segments.services.events import assignment_deleted, assignment_written
from customer_segments.services.paging import Listed, cursors, listing, reading
from customer_segments.store.assignments import SEARCHABLE, SORT_FIELD_NAMES
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store


async def require_segment(
    store: Store, connection: AsyncConnection, tenant: str, segment_id: str, *, hold: bool = False
) -> None:
    """NotFound unless the segment exists; `hold` (writes): and it stays until they commit."""
    if not await store.segments.exists(connection, tenant, segment_id, hold=hold):
        raise NotFound("segment", segment_id)


async def get_assignment(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    customer_id: str,
    legal_entity_id: str = "",
) -> Assignment:
    authorize(principal, UseCase.GET_ASSIGNMENT, tenant)
    key = AssignmentKey.parse(tenant, segment_id, customer_id, legal_entity_id)
    assignment = await store.assignments.read(key)
    if assignment is None:
        # Only a miss pays for telling "no such segment" from "no such assignment", on a
        # connection of its own: a hit needs no more than the read's.
        async with store.read() as connection:
            await require_segment(store, connection, key.tenant, key.segment_id)
        raise NotFound("customer assignment", key.display_id)
    return assignment


async def upsert_assignment(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    customer_id: str,
    legal_entity_id: str = "",
    *,
    mixins_json: str = "",
    metadata_mixins_json: str = "",
    version: int | None = None,
    must_exist: bool = False,
) -> UpsertOutcome:
    """Creates (version 1) or replaces mixins and metadata.mixins (version + 1); with
    `version`, only if that is the stored one; with `must_exist`, never creates."""
    with authorized_write(principal, UseCase.UPSERT_ASSIGNMENT, tenant, segment_id):
        key = AssignmentKey.parse(tenant, segment_id, customer_id, legal_entity_id)
        write = AssignmentWrite.parse(key, mixins_json, metadata_mixins_json, version)
        return await write_assignment(store, write, must_exist=must_exist)


async def write_assignment(
    store: Store, write: AssignmentWrite, *, must_exist: bool = False
) -> UpsertOutcome:
    """The upsert of an authorized, validated write (bulk calls retry items with it)."""
    key = write.key
    now = utc_now()
    async with store.write() as connection:
        await require_segment(store, connection, key.tenant, key.segment_id, hold=True)
        version = await store.assignments.upsert(connection, write, now)
        # A creation that must not be one is rolled back with the transaction.
        if version is None or (must_exist and is_creation(version)):
            # Read only on this rare path, for the caller's PreconditionFailure.
            current = None if version is not None else await store.assignments.get(connection, key)
            raise _conflict(key, write.expected_version, current)
        assignment = await store.assignments.get(connection, key)
        assert assignment is not None  # written in this very transaction
        if store.events.enabled:
            await store.events.append(
                connection, key.tenant, [assignment_written(key.tenant, assignment)], now
            )
    return UpsertOutcome(created=is_creation(version), assignment=assignment)


async def remove_assignment(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    customer_id: str,
    legal_entity_id: str = "",
    *,
    version: int | None = None,
    must_exist: bool = False,
) -> None:
    """Idempotent: removing an assignment that does not exist succeeds, unless `version` is
    given (it must exist at that version) or `must_exist` (VersionConflict otherwise)."""
    with authorized_write(principal, UseCase.REMOVE_ASSIGNMENT, tenant, segment_id):
        key = AssignmentKey.parse(tenant, segment_id, customer_id, legal_entity_id)
        if version is not None and version < 1:
            raise InvalidArgument("version", "must be at least 1")
        async with store.write() as connection:
            await require_segment(store, connection, key.tenant, key.segment_id)
            removed = await store.assignments.delete(connection, key, version)
            if (version is not None or must_exist) and not removed:
                raise _conflict(key, version, await store.assignments.get(connection, key))
            if removed and store.events.enabled:
                await store.events.append(
                    connection, key.tenant, [assignment_deleted(key)], utc_now()
                )


def _conflict(
    key: AssignmentKey, expected: int | None, current: Assignment | None
) -> VersionConflict:
    actual = None if current is None else current.version
    return VersionConflict("customer assignment", key.display_id, expected, actual)


async def list_assignments(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    *,
    q: str = "",
    sort: str = "",
    page: Page,
    page_token: str = "",
    include_total_count: bool = False,
) -> Listed[Assignment]:
    """A page of a segment's assignments that match q; by page number or by cursor (`page` as
    the caller gave it, 0: not given). A customer token gets its own view (see
    `_own_assignments`)."""
    authorize(principal, UseCase.LIST_ASSIGNMENTS, tenant)
    return await _list(
        store, principal, tenant, segment_id, q, sort, page, page_token, include_total_count
    )


async def search_assignments(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    *,
    q: str = "",
    sort: str = "",
    page: Page,
    page_token: str = "",
    include_total_count: bool = False,
) -> Listed[Assignment]:
    """The same answer as `list_assignments`, for readers of the whole tenant only (the
    Emporix scopes let a customer list, not search)."""
    authorize(principal, UseCase.SEARCH_ASSIGNMENTS, tenant)
    return await _list(
        store, principal, tenant, segment_id, q, sort, page, page_token, include_total_count
    )


async def _list(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    q: str,
    sort: str,
    page: Page,
    page_token: str,
    include_total_count: bool,
) -> Listed[Assignment]:
    page = Page.parse(*page)  # as the caller gave it (0: not given), checked once it may ask
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    scope = ("assignments", tenant, segment_id)
    request = listing(scope, q, sort, page, page_token, SEARCHABLE, SORT_FIELD_NAMES)
    query = request.query
    async with reading(store, query) as connection:
        if principal.sees_only_own:
            own = await _own_assignments(store, connection, principal, tenant, segment_id)
            query = query.restricted_to(*own)
        else:
            await require_segment(store, connection, tenant, segment_id)
        found = await store.assignments.list(
            connection, tenant, segment_id, query, request.sort, request.window
        )
        total = (
            await store.assignments.count(connection, tenant, segment_id, query)
            if include_total_count and not request.by_cursor
            else None
        )
    return Listed(found.items, total, cursors(request, found))


async def _own_assignments(
    store: Store, connection: AsyncConnection, viewer: Principal, tenant: str, segment_id: str
) -> tuple[Condition, ...]:
    """A customer's own view: their assignment (for their legal entity; a B2C token: the B2C
    one) in a segment that is active now. Any other segment is PermissionDenied with one
    message, whether it does not exist, is not active now or has no assignment of theirs, so
    that a customer cannot tell which segments exist."""
    customer_id = require_customer(viewer)
    own = AssignmentKey(tenant, segment_id, customer_id, viewer.legal_entity_id or "")
    segment = await store.segments.get(connection, tenant, segment_id)
    if (
        segment is None
        or not segment.is_active_at(utc_now())
        or await store.assignments.get(connection, own) is None
    ):
        raise outside_own_view()
    legal_entity = Field("legalEntityId", FieldKind.TEXT)
    return (
        Compare(Field("customerId", FieldKind.TEXT), Operator.EQ, customer_id),
        Compare(legal_entity, Operator.EQ, viewer.legal_entity_id)
        if viewer.legal_entity_id
        else IsNull(legal_entity),  # a B2C token: B2C assignments only
    )
