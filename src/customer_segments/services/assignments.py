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
from customer_segments.domain.errors import NotFound, VersionConflict
from customer_segments.domain.listing import Page
from customer_segments.services.paging import Listed, cursors, listing, reading
from customer_segments.store.assignments import SEARCHABLE, SORT_FIELD_NAMES
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store


async def require_segment(
    store: Store, connection: AsyncConnection, tenant: str, segment_id: str
) -> None:
    if not await store.segments.exists(connection, tenant, segment_id):
        raise NotFound("segment", segment_id)


async def get_assignment(store: Store, key: AssignmentKey) -> Assignment:
    async with store.read() as connection:
        assignment = await store.assignments.get(connection, key)
        if assignment is None:
            # Only a miss pays for telling "no such segment" from "no such assignment".
            await require_segment(store, connection, key.tenant, key.segment_id)
            raise NotFound("customer assignment", key.display_id)
    return assignment


async def upsert_assignment(store: Store, write: AssignmentWrite) -> UpsertOutcome:
    """Creates (version 1) or replaces mixins and metadata.mixins (version + 1)."""
    key = write.key
    async with store.write() as connection:
        await require_segment(store, connection, key.tenant, key.segment_id)
        version = await store.assignments.upsert(connection, write, utc_now())
        if version is None:
            raise VersionConflict(key.display_id)
        assignment = await store.assignments.get(connection, key)
    assert assignment is not None  # written in this very transaction
    return UpsertOutcome(created=is_creation(version), assignment=assignment)


async def remove_assignment(store: Store, key: AssignmentKey) -> None:
    """Idempotent: removing an assignment that does not exist succeeds."""
    async with store.write() as connection:
        await require_segment(store, connection, key.tenant, key.segment_id)
        await store.assignments.delete(connection, key)


async def list_assignments(
    store: Store,
    tenant: str,
    segment_id: str,
    *,
    q: str = "",
    sort: str = "",
    page: Page,
    page_token: str = "",
    include_total_count: bool = False,
) -> Listed[Assignment]:
    """A page of a segment's assignments that match q; by page number or by cursor."""
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    scope = ("assignments", tenant, segment_id)
    request = listing(scope, q, sort, page, page_token, SEARCHABLE, SORT_FIELD_NAMES)
    async with reading(store, request.query) as connection:
        await require_segment(store, connection, tenant, segment_id)
        found = await store.assignments.list(
            connection, tenant, segment_id, request.query, request.sort, request.window
        )
        total = (
            await store.assignments.count(connection, tenant, segment_id, request.query)
            if include_total_count and not request.by_cursor
            else None
        )
    return Listed(found.items, total, cursors(request, found))
