"""Bulk create, upsert and delete of segments (the REST bulk paths): the caller is authorized
once for the call; then every item is decided on its own, in request order, in a transaction
of its own, exactly as the single use case would decide it, and its result is yielded at once.
So one bad item never stops the others, and an item reported as failed left nothing behind.
Items come as functions that read them (the transport's conversion), called when the item is
decided: an item that cannot be read (a timestamp out of range) is that item's 400.

Segments are few and each write locks its row, so items are not batched into one statement as
assignments are (services/bulk_assignments.py): the per-item semantics are the point here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from customer_segments.domain import validation
from customer_segments.domain.errors import (
    ITEM_NOT_WRITTEN,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    ItemFailure,
    NotFound,
    Unavailable,
    VersionConflict,
)
from customer_segments.domain.principal import Principal
from customer_segments.domain.segment import BulkSegmentResult, BulkSegmentUpsert, SegmentInput
from customer_segments.services.audit import authorized_write
from customer_segments.services.authorization import UseCase
from customer_segments.services.segments import insert_segment, remove_segment, write_segment
from customer_segments.store.store import Store

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Read = Callable[[], Item]
CREATED, NO_CONTENT, INTERNAL = 201, 204, 500

# The HTTP code an item gets for the error its single call would have raised.
_ITEM_CODES: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidArgument, 400),
    (FailedPrecondition, 400),
    (NotFound, 404),
    (AlreadyExists, 409),
    (VersionConflict, 409),
    (Unavailable, 503),
)


async def bulk_create_segments(
    store: Store, principal: Principal, tenant: str, items: Iterable[Read[tuple[str, SegmentInput]]]
) -> AsyncIterator[BulkSegmentResult]:
    """Items are (id, segment); an empty id gets a generated one, reported in the result."""

    async def create(item: tuple[str, SegmentInput]) -> tuple[int, str]:
        created = await insert_segment(store, tenant, *item)
        return CREATED, created.id

    with authorized_write(principal, UseCase.BULK_CREATE_SEGMENTS, tenant, None):
        validation.tenant(tenant)
        async for result in _each(items, lambda item: item[0], create):
            yield result


async def bulk_upsert_segments(
    store: Store, principal: Principal, tenant: str, items: Iterable[Read[BulkSegmentUpsert]]
) -> AsyncIterator[BulkSegmentResult]:
    """201 for a created segment, 204 for a replaced one."""

    async def upsert(item: BulkSegmentUpsert) -> tuple[int, str]:
        if not item.segment_id:
            # The id is the item's own field here, not a path parameter as for one upsert.
            raise InvalidArgument("segment.id", "is required")
        outcome = await write_segment(
            store, tenant, item.segment_id, item.segment, item.expected_version
        )
        return (CREATED if outcome.created else NO_CONTENT), item.segment_id

    with authorized_write(principal, UseCase.BULK_UPSERT_SEGMENTS, tenant, None):
        validation.tenant(tenant)
        async for result in _each(items, lambda item: item.segment_id, upsert):
            yield result


async def bulk_delete_segments(
    store: Store, principal: Principal, tenant: str, segment_ids: Iterable[str], *, force: bool
) -> AsyncIterator[BulkSegmentResult]:
    """204 for a deleted segment, 404 for one that does not exist (unlike assignments, a
    segment's deletion is not idempotent, as for one DELETE)."""

    async def delete(segment_id: str) -> tuple[int, str]:
        await remove_segment(store, tenant, segment_id, force=force)
        return NO_CONTENT, segment_id

    with authorized_write(principal, UseCase.BULK_DELETE_SEGMENTS, tenant, None):
        validation.tenant(tenant)
        reads = ((lambda segment_id=segment_id: segment_id) for segment_id in segment_ids)
        async for result in _each(reads, lambda segment_id: segment_id, delete):
            yield result


async def _each(
    items: Iterable[Read[Item]],
    named_id: Callable[[Item], str],
    decide: Callable[[Item], Awaitable[tuple[int, str]]],
) -> AsyncIterator[BulkSegmentResult]:
    """Decides the items one after another; `decide` answers the code and the segment id."""
    for index, read in enumerate(items, start=1):
        item: Item | None = None
        try:
            item = read()
            code, segment_id = await decide(item)
        except DomainError as error:
            failed = next((code for kind, code in _ITEM_CODES if isinstance(error, kind)), None)
            if failed is None:
                raise  # not an item's fault (PermissionDenied is decided for the call)
            yield BulkSegmentResult(index, failed, _id(named_id, item), ItemFailure.of(error))
            continue
        except SQLAlchemyError:
            log.exception("segment bulk item %d could not be written", index)
            yield BulkSegmentResult(index, INTERNAL, _id(named_id, item), ITEM_NOT_WRITTEN)
            continue
        yield BulkSegmentResult(index, code, segment_id)


def _id(named_id: Callable[[Item], str], item: Item | None) -> str:
    return "" if item is None else named_id(item)
