"""Use cases of segments."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from customer_segments.domain import validation
from customer_segments.domain.assignment import AssignmentKey
from customer_segments.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    VersionConflict,
)
from customer_segments.domain.listing import Page, Window
from customer_segments.domain.principal import Principal
from customer_segments.domain.segment import Segment, SegmentInput, SegmentUpsertOutcome
from customer_segments.domain.segment_document import PatchInput, patched_fields
from customer_segments.query.syntax import Compare, Field, FieldKind, Operator, Query
from customer_segments.services.audit import authorized_write
from customer_segments.services.authorization import (
    UseCase,
    authorize,
    outside_own_view,
    require_customer,
)
from customer_segments.services.events import (
    assignment_deleted,
    segment_deleted,
    segment_written,
)
from customer_segments.services.paging import Listed, cursors, listing, reading
from customer_segments.store.database import utc_now
from customer_segments.store.segments import (
    SEARCHABLE,
    SORT_FIELD_NAMES,
    SegmentFilter,
)
from customer_segments.store.store import Store


def new_segment_id() -> str:
    """24 hex digits, the shape of Emporix's generated ids."""
    return secrets.token_hex(12)


async def create_segment(
    store: Store, principal: Principal, tenant: str, segment_id: str, segment: SegmentInput
) -> Segment:
    """`segment_id` empty: an id is made (see `new_segment_id`)."""
    with authorized_write(principal, UseCase.CREATE_SEGMENT, tenant, segment_id):
        return await insert_segment(store, tenant, segment_id, segment)


async def insert_segment(
    store: Store, tenant: str, segment_id: str, segment: SegmentInput
) -> Segment:
    """The write of `create_segment`, for a caller already authorized (a bulk item)."""
    fields = segment.validated()
    validation.tenant(tenant)
    segment_id = validation.optional_identifier(segment_id, "segment.id") or new_segment_id()
    now = utc_now()
    async with store.write() as connection:
        created = await store.segments.insert(connection, tenant, segment_id, fields, now)
        if created is not None and store.events.enabled:
            await store.events.append(
                connection, tenant, [segment_written(tenant, created, None)], now
            )
    if created is None:
        raise AlreadyExists(segment_id)
    return created


async def upsert_segment(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    segment: SegmentInput,
    expected_version: int | None,
    *,
    must_exist: bool = False,
) -> SegmentUpsertOutcome:
    """With `expected_version`, only if that is the stored one (an absent segment is created
    whatever it is); with `must_exist`, never creates."""
    with authorized_write(principal, UseCase.UPSERT_SEGMENT, tenant, segment_id):
        return await write_segment(
            store, tenant, segment_id, segment, expected_version, must_exist=must_exist
        )


async def write_segment(
    store: Store,
    tenant: str,
    segment_id: str,
    segment: SegmentInput,
    expected_version: int | None,
    *,
    must_exist: bool = False,
) -> SegmentUpsertOutcome:
    """The write of `upsert_segment`, for a caller already authorized (a bulk item)."""
    fields = segment.validated()
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    _check_expected(expected_version)
    now = utc_now()
    async with store.write() as connection:
        # segment-updated tells the status before: read (and held) only when events are on.
        previous = (
            await store.segments.get(connection, tenant, segment_id, lock=True)
            if store.events.enabled
            else None
        )
        written = await store.segments.upsert(
            connection, tenant, segment_id, fields, expected_version, now
        )
        if written is not None and must_exist and written.version == 1:
            # Rolls the creation back.
            raise VersionConflict("segment", segment_id, expected_version, None)
        if written is None:  # read only on this rare path, for PreconditionFailure
            current = await store.segments.get(connection, tenant, segment_id)
            actual = None if current is None else current.version
            raise VersionConflict("segment", segment_id, expected_version, actual)
        if store.events.enabled:
            status = None if previous is None else previous.status
            await store.events.append(
                connection, tenant, [segment_written(tenant, written, status)], now
            )
    return SegmentUpsertOutcome(created=written.version == 1, segment=written)


async def patch_segment(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    operations: Sequence[PatchInput],
    *,
    expected_version: int | None = None,
) -> Segment:
    """Applies the JSON Patch to the segment as stored and writes the result, in one
    transaction that holds the segment: concurrent patches apply one after the other, each to
    what the previous one wrote. With `expected_version`, only to that version."""
    with authorized_write(principal, UseCase.PATCH_SEGMENT, tenant, segment_id):
        parsed = [operation.parsed(n) for n, operation in enumerate(operations, start=1)]
        validation.tenant(tenant)
        validation.identifier(segment_id, "segment_id")
        _check_expected(expected_version)
        async with store.write() as connection:
            current = await store.segments.get(connection, tenant, segment_id, lock=True)
            _require_version(current, expected_version, segment_id)
            if current is None:
                raise NotFound("segment", segment_id)
            fields = patched_fields(current, parsed)
            now = utc_now()
            segment = await store.segments.upsert(
                connection, tenant, segment_id, fields, current.version, now
            )
            assert segment is not None  # written at the version read under the lock
            if store.events.enabled:
                await store.events.append(
                    connection, tenant, [segment_written(tenant, segment, current.status)], now
                )
        return segment


def _check_expected(expected_version: int | None) -> None:
    if expected_version is not None and expected_version < 1:
        raise InvalidArgument("version", "must be at least 1")


def _require_version(
    current: Segment | None, expected_version: int | None, segment_id: str
) -> None:
    """A write that expects a version finds the (locked) segment at it; an absent segment is
    a conflict too, as If-Match asks (RFC 9110)."""
    if expected_version is not None and (current is None or current.version != expected_version):
        actual = None if current is None else current.version
        raise VersionConflict("segment", segment_id, expected_version, actual)


async def get_segment(store: Store, principal: Principal, tenant: str, segment_id: str) -> Segment:
    """A customer token gets only one of its own segments: any other, whether it does not
    exist, is not active now or has no assignment of the customer, is PermissionDenied with
    one message, so that a customer cannot tell which segments exist."""
    authorize(principal, UseCase.GET_SEGMENT, tenant)
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    async with store.read() as connection:
        if principal.sees_only_own:
            by_id = Compare(Field("id", FieldKind.TEXT), Operator.EQ, segment_id)
            own = _own_segments(principal, Query((by_id,)))
            found = await store.segments.list(connection, tenant, own, [], Window(1, 0, None))
            if not found.items:
                raise outside_own_view()
            return found.items[0]
        segment = await store.segments.get(connection, tenant, segment_id)
    if segment is None:
        raise NotFound("segment", segment_id)
    return segment


async def list_segments(
    store: Store,
    principal: Principal,
    tenant: str,
    *,
    q: str = "",
    customer_id: str = "",
    legal_entity_id: str = "",
    sort: str = "",
    page: Page,
    page_token: str = "",
    include_total_count: bool = False,
) -> Listed[Segment]:
    """The tenant's segments; with `customer_id`, only those the customer is assigned to.
    A customer token sees only the active segments it is assigned to."""
    authorize(principal, UseCase.LIST_SEGMENTS, tenant)
    page = Page.parse(*page)  # as the caller gave it (0: not given), checked once it may ask
    validation.tenant(tenant)
    validation.optional_identifier(customer_id, "customer_id")
    validation.optional_identifier(legal_entity_id, "legal_entity_id")
    if legal_entity_id and not customer_id:
        raise InvalidArgument("customer_id", "is required with legal_entity_id")
    scope = ("segments", tenant, customer_id, legal_entity_id)
    request = listing(scope, q, sort, page, page_token, SEARCHABLE, SORT_FIELD_NAMES)
    if principal.sees_only_own:
        segment_filter = _own_segments(principal, request.query)
        if customer_id not in ("", segment_filter.customer_id) or legal_entity_id not in (
            "",
            segment_filter.legal_entity_id,
        ):
            raise outside_own_view()
    else:
        segment_filter = SegmentFilter(request.query, customer_id, legal_entity_id or None)
    counted = include_total_count and not request.by_cursor
    # The segments of a customer, asked on every price lookup: on a read connection of its
    # own, without an SQLAlchemy Connection around it, when the listing is of that shape.
    fast = (
        None
        if counted
        else await store.segments.read_of_customer(
            tenant, segment_filter, request.sort, request.window
        )
    )
    if fast is not None:
        return Listed(fast.items, None, cursors(request, fast))
    async with reading(store, request.query) as connection:
        found = await store.segments.list(
            connection, tenant, segment_filter, request.sort, request.window
        )
        total = await store.segments.count(connection, tenant, segment_filter) if counted else None
    return Listed(found.items, total, cursors(request, found))


def _own_segments(viewer: Principal, query: Query) -> SegmentFilter:
    """A customer's own view: the active segments they are assigned to (for their legal
    entity; a B2C token: by a B2C assignment)."""
    return SegmentFilter(
        query,
        customer_id=require_customer(viewer),
        legal_entity_id=viewer.legal_entity_id or "",
        active_at=utc_now(),
    )


async def delete_segment(
    store: Store,
    principal: Principal,
    tenant: str,
    segment_id: str,
    *,
    force: bool,
    expected_version: int | None = None,
) -> None:
    """A segment with assignments is deleted only with `force`, together with them; with
    `expected_version`, only at that version."""
    with authorized_write(principal, UseCase.DELETE_SEGMENT, tenant, segment_id):
        await remove_segment(
            store, tenant, segment_id, force=force, expected_version=expected_version
        )


async def remove_segment(
    store: Store,
    tenant: str,
    segment_id: str,
    *,
    force: bool,
    expected_version: int | None = None,
) -> None:
    """The deletion of `delete_segment`, for a caller already authorized (a bulk item)."""
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    _check_expected(expected_version)
    async with store.write() as connection:
        # Locked first: a write of its assignments that is under way finishes before, and
        # one that starts after waits, then finds the segment gone (NotFound).
        current = await store.segments.get(connection, tenant, segment_id, lock=True)
        _require_version(current, expected_version, segment_id)
        if current is None:
            raise NotFound("segment", segment_id)
        removed: list[tuple[str, str]] = []
        if await store.assignments.any_in_segment(connection, tenant, segment_id):
            if not force:
                raise FailedPrecondition(
                    f"The segment with id {segment_id} still has customer assignments; "
                    "delete with force to remove them too.",
                    segment_id,
                    Reason.SEGMENT_HAS_ASSIGNMENTS,
                )
            removed = await store.assignments.delete_all_in_segment(connection, tenant, segment_id)
        await store.segments.delete(connection, tenant, segment_id)
        if store.events.enabled:
            # One assignment-deleted per assignment the force took, then the segment's own.
            gone = [
                assignment_deleted(AssignmentKey(tenant, segment_id, *pair))
                for pair in sorted(removed)
            ]
            await store.events.append(
                connection, tenant, [*gone, segment_deleted(tenant, segment_id)], utc_now()
            )
