"""Use cases of segments."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from customer_segments.domain import validation
from customer_segments.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from customer_segments.domain.listing import Page, Window
from customer_segments.domain.principal import Principal
from customer_segments.domain.segment import Segment, SegmentFields, SegmentUpsertOutcome
from customer_segments.domain.segment_document import PatchOperation, patched_fields
from customer_segments.query.syntax import Compare, Field, FieldKind, Operator, Query
from customer_segments.services.authorization import require_customer
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
    store: Store, tenant: str, segment_id: str, fields: SegmentFields
) -> Segment:
    validation.tenant(tenant)
    segment_id = validation.optional_identifier(segment_id, "segment.id") or new_segment_id()
    async with store.write() as connection:
        segment = await store.segments.insert(connection, tenant, segment_id, fields, utc_now())
    if segment is None:
        raise AlreadyExists(segment_id)
    return segment


async def upsert_segment(
    store: Store,
    tenant: str,
    segment_id: str,
    fields: SegmentFields,
    expected_version: int | None,
) -> SegmentUpsertOutcome:
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    if expected_version is not None and expected_version < 1:
        raise InvalidArgument("version", "must be at least 1")
    async with store.write() as connection:
        segment = await store.segments.upsert(
            connection, tenant, segment_id, fields, expected_version, utc_now()
        )
    if segment is None:
        raise VersionConflict(segment_id)
    return SegmentUpsertOutcome(created=segment.version == 1, segment=segment)


async def patch_segment(
    store: Store, tenant: str, segment_id: str, operations: Sequence[PatchOperation]
) -> Segment:
    """Applies the JSON Patch to the segment as stored and writes the result, in one
    transaction that holds the segment: concurrent patches apply one after the other, each to
    what the previous one wrote."""
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    async with store.write() as connection:
        current = await store.segments.get(connection, tenant, segment_id, lock=True)
        if current is None:
            raise NotFound("segment", segment_id)
        fields = patched_fields(current, operations)
        segment = await store.segments.upsert(
            connection, tenant, segment_id, fields, current.version, utc_now()
        )
    if segment is None:
        raise VersionConflict(segment_id)
    return segment


async def get_segment(store: Store, viewer: Principal, tenant: str, segment_id: str) -> Segment:
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    async with store.read() as connection:
        if viewer.sees_only_own:
            by_id = Compare(Field("id", FieldKind.TEXT), Operator.EQ, segment_id)
            own = _own_segments(viewer, Query((by_id,)))
            found = await store.segments.list(connection, tenant, own, [], Window(1, 0, None))
            if not found.items:
                raise PermissionDenied(OWN_SEGMENTS_ONLY)
            return found.items[0]
        segment = await store.segments.get(connection, tenant, segment_id)
    if segment is None:
        raise NotFound("segment", segment_id)
    return segment


async def list_segments(
    store: Store,
    viewer: Principal,
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
    validation.tenant(tenant)
    validation.optional_identifier(customer_id, "customer_id")
    validation.optional_identifier(legal_entity_id, "legal_entity_id")
    if legal_entity_id and not customer_id:
        raise InvalidArgument("customer_id", "is required with legal_entity_id")
    scope = ("segments", tenant, customer_id, legal_entity_id)
    request = listing(scope, q, sort, page, page_token, SEARCHABLE, SORT_FIELD_NAMES)
    if viewer.sees_only_own:
        segment_filter = _own_segments(viewer, request.query)
        if customer_id not in ("", segment_filter.customer_id) or legal_entity_id not in (
            "",
            segment_filter.legal_entity_id,
        ):
            raise PermissionDenied(OWN_SEGMENTS_ONLY)
    else:
        segment_filter = SegmentFilter(request.query, customer_id, legal_entity_id or None)
    async with reading(store, request.query) as connection:
        found = await store.segments.list(
            connection, tenant, segment_filter, request.sort, request.window
        )
        total = (
            await store.segments.count(connection, tenant, segment_filter)
            if include_total_count and not request.by_cursor
            else None
        )
    return Listed(found.items, total, cursors(request, found))


OWN_SEGMENTS_ONLY = (
    "A customer access token reads only the active segments its customer is assigned to."
)


def _own_segments(viewer: Principal, query: Query) -> SegmentFilter:
    """A customer's own view: the active segments they are assigned to (for their legal
    entity; a B2C token: by a B2C assignment)."""
    return SegmentFilter(
        query,
        customer_id=require_customer(viewer),
        legal_entity_id=viewer.legal_entity_id or "",
        active_at=utc_now(),
    )


async def delete_segment(store: Store, tenant: str, segment_id: str, *, force: bool) -> None:
    """A segment with assignments is deleted only with `force`, together with them."""
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    async with store.write() as connection:
        if not await store.segments.exists(connection, tenant, segment_id):
            raise NotFound("segment", segment_id)
        if await store.assignments.any_in_segment(connection, tenant, segment_id):
            if not force:
                raise FailedPrecondition(
                    f"The segment with id {segment_id} still has customer assignments; "
                    "delete with force to remove them too.",
                    segment_id,
                )
            await store.assignments.delete_all_in_segment(connection, tenant, segment_id)
        await store.segments.delete(connection, tenant, segment_id)
