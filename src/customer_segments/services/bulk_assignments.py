"""Bulk upsert and bulk remove: every item is decided on its own, results stream back.

Items are taken in chunks; each chunk is one transaction whose valid, distinct items go to
the database in one multi-row statement. A key repeated in a chunk is written in rounds (its
first occurrence in round 1, the second in round 2, ...), so repeats apply in request order.
If the database rejects a chunk, its items are retried one by one, so that one bad item never
takes the others down and an item reported as failed leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain import validation
from customer_segments.domain.assignment import (
    AssignmentKey,
    AssignmentWrite,
    BulkItemResult,
    BulkRemoveInput,
    BulkUpsertInput,
)
from customer_segments.domain.errors import InvalidArgument, NotFound, VersionConflict
from customer_segments.services.assignments import require_segment, upsert_assignment
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store

log = logging.getLogger(__name__)

CHUNK_SIZE = 200
CREATED, UPDATED, BAD_REQUEST, NOT_FOUND, CONFLICT, INTERNAL = 201, 204, 400, 404, 409, 500


async def bulk_upsert_assignments(
    store: Store,
    tenant: str,
    segment_id: str,
    batches: AsyncIterable[Sequence[BulkUpsertInput]],
) -> AsyncIterator[list[BulkItemResult]]:
    """Yields the results of each chunk, in request order, as soon as the chunk commits."""
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    async with store.read() as connection:
        await require_segment(store, connection, tenant, segment_id)
    next_index = 1
    async for batch in batches:
        for start in range(0, len(batch), CHUNK_SIZE):
            chunk = batch[start : start + CHUNK_SIZE]
            yield await _upsert_chunk(store, tenant, segment_id, next_index, chunk)
            next_index += len(chunk)


async def bulk_remove_assignments(
    store: Store,
    tenant: str,
    segment_id: str,
    batches: AsyncIterable[Sequence[BulkRemoveInput]],
) -> AsyncIterator[list[BulkItemResult]]:
    """Removing is idempotent: every valid item reports 204, whether it existed or not."""
    validation.tenant(tenant)
    validation.identifier(segment_id, "segment_id")
    async with store.read() as connection:
        await require_segment(store, connection, tenant, segment_id)
    next_index = 1
    async for batch in batches:
        for start in range(0, len(batch), CHUNK_SIZE):
            chunk = batch[start : start + CHUNK_SIZE]
            yield await _remove_chunk(store, tenant, segment_id, next_index, chunk)
            next_index += len(chunk)


def _key(tenant: str, segment_id: str, customer_id: str, legal_entity_id: str) -> AssignmentKey:
    return AssignmentKey(
        tenant,
        segment_id,
        validation.identifier(customer_id, "customer_id"),
        validation.optional_identifier(legal_entity_id, "legal_entity_id"),
    )


def _result(index: int, code: int, key: AssignmentKey, message: str = "") -> BulkItemResult:
    return BulkItemResult.model_construct(
        index=index,
        code=code,
        message=message,
        customer_id=key.customer_id,
        legal_entity_id=key.legal_entity_id,
    )


def _invalid(
    index: int, item: BulkUpsertInput | BulkRemoveInput, error: InvalidArgument
) -> BulkItemResult:
    return BulkItemResult.model_construct(
        index=index,
        code=BAD_REQUEST,
        message=error.message,
        customer_id=item.customer_id,
        legal_entity_id=item.legal_entity_id,
    )


async def _upsert_chunk(
    store: Store, tenant: str, segment_id: str, first_index: int, chunk: Sequence[BulkUpsertInput]
) -> list[BulkItemResult]:
    results: list[BulkItemResult] = []
    writes: list[tuple[int, AssignmentWrite]] = []
    for index, item in enumerate(chunk, start=first_index):
        try:
            key = _key(tenant, segment_id, item.customer_id, item.legal_entity_id)
            write = AssignmentWrite.parse(
                key, item.mixins_json, item.metadata_mixins_json, item.version
            )
        except InvalidArgument as error:
            results.append(_invalid(index, item, error))
            continue
        writes.append((index, write))
    if writes:
        try:
            async with store.write() as connection:
                results += await _write_rounds(store, connection, writes, utc_now())
        except SQLAlchemyError:
            log.warning(
                "bulk chunk rejected by the database; deciding its items one by one", exc_info=True
            )
            results += [await _upsert_alone(store, index, write) for index, write in writes]
    results.sort(key=lambda result: result.index)
    return results


async def _write_rounds(
    store: Store,
    connection: AsyncConnection,
    writes: list[tuple[int, AssignmentWrite]],
    now: datetime,
) -> list[BulkItemResult]:
    first = writes[0][1].key
    if not await store.segments.exists(connection, first.tenant, first.segment_id):
        message = NotFound("segment", first.segment_id).message
        return [_result(index, NOT_FOUND, write.key, message) for index, write in writes]
    rounds: list[list[tuple[int, AssignmentWrite]]] = []
    occurrences: Counter[AssignmentKey] = Counter()
    for index, write in writes:
        occurrence = occurrences[write.key]
        occurrences[write.key] += 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append((index, write))

    results: list[BulkItemResult] = []
    for items in rounds:
        unconditional = [(i, w) for i, w in items if w.expected_version is None]
        if unconditional:
            written = await store.assignments.upsert_unconditionally(
                connection, [write for _, write in unconditional], now
            )
            for index, write in unconditional:
                outcome = written[(write.key.customer_id, write.key.legal_entity_id)]
                results.append(_result(index, CREATED if outcome.created else UPDATED, write.key))
        for index, write in items:
            if write.expected_version is None:
                continue
            versioned = await store.assignments.upsert(connection, write, now)
            if versioned is None:
                message = VersionConflict(write.key.display_id).message
                results.append(_result(index, CONFLICT, write.key, message))
            else:
                code = CREATED if versioned.created else UPDATED
                results.append(_result(index, code, write.key))
    return results


async def _upsert_alone(store: Store, index: int, write: AssignmentWrite) -> BulkItemResult:
    try:
        outcome = await upsert_assignment(store, write)
    except NotFound as error:
        return _result(index, NOT_FOUND, write.key, error.message)
    except VersionConflict as error:
        return _result(index, CONFLICT, write.key, error.message)
    except SQLAlchemyError:
        log.exception("bulk item %d could not be written", index)
        return _result(index, INTERNAL, write.key, "The item could not be written.")
    return _result(index, CREATED if outcome.created else UPDATED, write.key)


async def _remove_chunk(
    store: Store, tenant: str, segment_id: str, first_index: int, chunk: Sequence[BulkRemoveInput]
) -> list[BulkItemResult]:
    results: list[BulkItemResult] = []
    keys: list[tuple[int, AssignmentKey]] = []
    for index, item in enumerate(chunk, start=first_index):
        try:
            keys.append((index, _key(tenant, segment_id, item.customer_id, item.legal_entity_id)))
        except InvalidArgument as error:
            results.append(_invalid(index, item, error))
    if keys:
        async with store.write() as connection:
            if await store.segments.exists(connection, tenant, segment_id):
                pairs = [(key.customer_id, key.legal_entity_id) for _, key in keys]
                await store.assignments.delete_many(connection, tenant, segment_id, pairs)
                results += [_result(index, UPDATED, key) for index, key in keys]
            else:
                message = NotFound("segment", segment_id).message
                results += [_result(index, NOT_FOUND, key, message) for index, key in keys]
    results.sort(key=lambda result: result.index)
    return results
