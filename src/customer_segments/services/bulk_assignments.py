"""Bulk upsert and bulk remove: every item is decided on its own, results stream back.

Items are taken in chunks of 200, decided one chunk after another; while a chunk is written,
the next one is read and validated. A chunk's valid, distinct items go to the database in one
multi-row statement (one transaction when a chunk needs more than one). A key repeated in a
chunk is written in rounds (its first occurrence in round 1, the second in round 2, ...), so
repeats apply in request order.
If the database rejects a chunk, its items are retried one by one, so that one bad item never
takes the others down and an item reported as failed leaves nothing behind. The segment is
checked once per call; a segment deleted in mid-stream is caught by the foreign key, and the
retry then reports each item as 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments import metrics
from customer_segments.domain import validation
from customer_segments.domain.assignment import (
    AssignmentKey,
    AssignmentWrite,
    Batch,
    BulkItemResult,
    BulkRemoveInput,
    BulkUpsertInput,
    is_creation,
)
from customer_segments.domain.errors import (
    ITEM_NOT_WRITTEN,
    InvalidArgument,
    ItemFailure,
    NotFound,
    Reason,
    VersionConflict,
)
from customer_segments.domain.principal import Principal
from customer_segments.services.assignments import require_segment, write_assignment
from customer_segments.services.audit import authorized_write
from customer_segments.services.authorization import UseCase, require_tenant
from customer_segments.services.events import assignment_deleted, assignment_written
from customer_segments.store.database import utc_now
from customer_segments.store.events import NewEvent
from customer_segments.store.store import Store

if TYPE_CHECKING:
    from customer_segments.metrics.definitions import Instruments

log = logging.getLogger(__name__)

CHUNK_SIZE = 200
Item = TypeVar("Item")
Results = list[BulkItemResult]
Validated = TypeVar("Validated")
CREATED, UPDATED, BAD_REQUEST, NOT_FOUND, CONFLICT, INTERNAL = 201, 204, 400, 404, 409, 500


async def bulk_upsert_assignments(
    store: Store, principal: Principal, batches: AsyncIterable[Batch[BulkUpsertInput]]
) -> AsyncIterator[list[BulkItemResult]]:
    """Yields the results of each chunk, in request order, as soon as the chunk commits."""
    messages = aiter(batches)
    first = await anext(messages, None)
    with _authorized(principal, UseCase.BULK_UPSERT_ASSIGNMENTS, first):
        if first is None:
            return
        tenant, segment_id = await _checked_segment(store, first)

        async def validated() -> AsyncIterator[ValidatedUpserts]:
            async for first_index, chunk in _chunks(principal, first, messages):
                yield _validate_upserts(tenant, segment_id, first_index, chunk)

        decided = _decide_in_order(validated(), partial(_write_upserts, store))
        async for results in _counted("upsert", decided):
            yield results


async def bulk_remove_assignments(
    store: Store, principal: Principal, batches: AsyncIterable[Batch[BulkRemoveInput]]
) -> AsyncIterator[list[BulkItemResult]]:
    """Removing is idempotent: every valid item reports 204, whether it existed or not."""
    messages = aiter(batches)
    first = await anext(messages, None)
    with _authorized(principal, UseCase.BULK_REMOVE_ASSIGNMENTS, first):
        if first is None:
            return
        tenant, segment_id = await _checked_segment(store, first)

        async def validated() -> AsyncIterator[ValidatedRemovals]:
            async for first_index, chunk in _chunks(principal, first, messages):
                yield _validate_removals(tenant, segment_id, first_index, chunk)

        removals = partial(_remove, store, tenant, segment_id)
        async for results in _counted("remove", _decide_in_order(validated(), removals)):
            yield results


# What became of an item, by its code: a metric label (customer_segments_bulk_items_total).
_OUTCOMES = {
    "upsert": {CREATED: "created", UPDATED: "updated"},
    "remove": {UPDATED: "removed"},
}
_FAILURES = {BAD_REQUEST: "invalid", NOT_FOUND: "not_found", CONFLICT: "conflict"}


def _counted(operation: str, decided: AsyncIterator[Results]) -> AsyncIterator[Results]:
    """The results as they are, counted by outcome when metrics are on."""
    instruments = metrics.instruments()
    return decided if instruments is None else _count(instruments, operation, decided)


async def _count(
    instruments: Instruments, operation: str, decided: AsyncIterator[Results]
) -> AsyncIterator[Results]:
    outcomes = {**_FAILURES, **_OUTCOMES[operation]}
    counters = {
        code: instruments.bulk_items.labels(operation, outcome)
        for code, outcome in outcomes.items()
    }
    failed = instruments.bulk_items.labels(operation, "failed")
    async for results in decided:
        for result in results:
            counters.get(result.code, failed).inc()
        yield results


def _authorized(
    principal: Principal, use_case: UseCase, first: Batch[Any] | None
) -> AbstractContextManager[None]:
    """The first batch names the call's tenant and segment; a stream without messages names
    none, so only the scope is checked."""
    if first is None:
        return authorized_write(principal, use_case, None, None)
    return authorized_write(principal, use_case, first.tenant, first.segment_id)


async def _checked_segment(store: Store, first: Batch[Any]) -> tuple[str, str]:
    tenant = validation.tenant(first.tenant)
    segment_id = validation.identifier(first.segment_id, "segment_id")
    async with store.read() as connection:
        await require_segment(store, connection, tenant, segment_id)
    return tenant, segment_id


async def _chunks(
    principal: Principal, first: Batch[Item], rest: AsyncIterator[Batch[Item]]
) -> AsyncIterator[tuple[int, Sequence[Item]]]:
    """The items in chunks of at most CHUNK_SIZE, with the 1-based index of each first item.
    A later batch (message of a stream) names the call's tenant and segment or none: another
    tenant is refused like the first batch's would be, another segment is invalid."""
    next_index = 1
    batch: Batch[Item] | None = first
    while batch is not None:
        if batch is not first:
            if batch.tenant:
                require_tenant(principal, batch.tenant)
            if batch.segment_id and batch.segment_id != first.segment_id:
                raise InvalidArgument("segment_id", "must be the same in every message of a stream")
        for start in range(0, len(batch.items), CHUNK_SIZE):
            chunk = batch.items[start : start + CHUNK_SIZE]
            yield next_index, chunk
            next_index += len(chunk)
        batch = await anext(rest, None)


class _EndOfChunks:
    pass


async def _decide_in_order(
    chunks: AsyncIterator[Validated],
    decide: Callable[[Validated], Coroutine[Any, Any, Results]],
) -> AsyncIterator[Results]:
    """Decides the chunks one after another, in request order (so a key repeated across chunks
    is written in order), and yields each chunk's results the moment it is decided.

    Reading and validating the next chunks runs in a task of its own, and a chunk that is
    ready when the previous one commits starts its write before the previous results are
    sent: Python work overlaps the database's instead of waiting for it.
    """
    ready: asyncio.Queue[Validated | _EndOfChunks | Exception] = asyncio.Queue(maxsize=2)

    async def read_ahead() -> None:
        try:
            async for chunk in chunks:
                await ready.put(chunk)
            await ready.put(_EndOfChunks())
        except Exception as error:  # re-raised below, in the caller's task
            await ready.put(error)

    def start(item: Validated | _EndOfChunks | Exception) -> asyncio.Task[Results] | None:
        """The write of the next chunk, or None at the end of the chunks."""
        if isinstance(item, Exception):
            raise item
        return None if isinstance(item, _EndOfChunks) else asyncio.create_task(decide(item))

    reader = asyncio.create_task(read_ahead())
    pending: asyncio.Task[Results] | None = None
    try:
        pending = start(await ready.get())
        while pending is not None:
            decided = await pending
            if ready.empty():
                pending = None
                yield decided
                pending = start(await ready.get())
            else:
                pending = start(ready.get_nowait())
                yield decided
    finally:
        # The caller went away (cancelled, deadline) or failed: leave nothing running.
        reader.cancel()
        if pending is not None:
            pending.cancel()


def _key(tenant: str, segment_id: str, customer_id: str, legal_entity_id: str) -> AssignmentKey:
    return AssignmentKey(
        tenant,
        segment_id,
        validation.identifier(customer_id, "customer_id"),
        validation.optional_identifier(legal_entity_id, "legal_entity_id"),
    )


def _code(version: int) -> int:
    return CREATED if is_creation(version) else UPDATED


# A conditional write the database found at another version (no VersionConflict is raised
# there: the statement just writes nothing).
_VERSION_CHANGED = ItemFailure(VersionConflict.MESSAGE, Reason.VERSION_MISMATCH)


def _result(
    index: int, code: int, key: AssignmentKey, failure: ItemFailure | None = None
) -> BulkItemResult:
    return BulkItemResult(index, code, key.customer_id, key.legal_entity_id, failure)


def _invalid(
    index: int, item: BulkUpsertInput | BulkRemoveInput, error: InvalidArgument
) -> BulkItemResult:
    failure = ItemFailure.of(error)
    return BulkItemResult(index, BAD_REQUEST, item.customer_id, item.legal_entity_id, failure)


class ValidatedUpserts(NamedTuple):
    invalid: list[BulkItemResult]
    writes: list[tuple[int, AssignmentWrite]]


def _validate_upserts(
    tenant: str, segment_id: str, first_index: int, chunk: Sequence[BulkUpsertInput]
) -> ValidatedUpserts:
    invalid: list[BulkItemResult] = []
    writes: list[tuple[int, AssignmentWrite]] = []
    for index, item in enumerate(chunk, start=first_index):
        try:
            key = _key(tenant, segment_id, item.customer_id, item.legal_entity_id)
            write = AssignmentWrite.parse(
                key, item.mixins_json, item.metadata_mixins_json, item.version
            )
        except InvalidArgument as error:
            invalid.append(_invalid(index, item, error))
            continue
        writes.append((index, write))
    return ValidatedUpserts(invalid, writes)


async def _write_upserts(store: Store, chunk: ValidatedUpserts) -> list[BulkItemResult]:
    results = list(chunk.invalid)
    if chunk.writes:
        try:
            results += await _write_chunk(store, chunk.writes)
        except SQLAlchemyError:
            log.warning(
                "bulk chunk rejected by the database; deciding its items one by one", exc_info=True
            )
            results += [await _upsert_alone(store, index, write) for index, write in chunk.writes]
    return _in_order(results)


def _in_order(results: Results) -> Results:
    results.sort(key=lambda result: result.index)
    return results


async def _write_chunk(store: Store, writes: list[tuple[int, AssignmentWrite]]) -> Results:
    """The chunk's valid items, and their change events, in one transaction.

    The common chunk (one round, no expected version) is one statement, atomic on its own,
    so it runs without BEGIN/COMMIT round trips: with events too where the database builds
    them in that statement (PostgreSQL); elsewhere their append makes it three statements."""
    rounds = _rounds(writes)
    events_on = store.events.enabled
    one_round = len(rounds) == 1 and all(write.expected_version is None for _, write in writes)
    if one_round and (not events_on or store.assignments.announces_in_sql):
        distinct = [write for _, write in writes]
        versions = await store.assignments.upsert_many_alone(
            distinct, utc_now(), announced=events_on
        )
        return [
            _result(
                index, _code(versions[write.key.customer_id, write.key.legal_entity_id]), write.key
            )
            for index, write in writes
        ]
    async with store.write() as connection:
        now = utc_now()
        events: list[NewEvent] | None = [] if events_on else None
        results = await _write_rounds(store, connection, rounds, now, events)
        if events:
            await store.events.append(connection, writes[0][1].key.tenant, events, now)
    return results


def _rounds(writes: list[tuple[int, AssignmentWrite]]) -> list[list[tuple[int, AssignmentWrite]]]:
    """Round n holds the n-th occurrence of each key, so that repeats apply in order."""
    if len({write.key for _, write in writes}) == len(writes):  # the common chunk: one round
        return [writes]
    rounds: list[list[tuple[int, AssignmentWrite]]] = [[]]
    occurrences: dict[AssignmentKey, int] = {}
    for index, write in writes:
        occurrence = occurrences.get(write.key, 0)
        occurrences[write.key] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append((index, write))
    return rounds


async def _write_rounds(
    store: Store,
    connection: AsyncConnection,
    rounds: list[list[tuple[int, AssignmentWrite]]],
    now: datetime,
    events: list[NewEvent] | None,
) -> list[BulkItemResult]:
    """`events`: when given, the change event of each item written is added to it, in the
    order the items were written."""
    results: list[BulkItemResult] = []
    for items in rounds:
        unconditional = [(i, w) for i, w in items if w.expected_version is None]
        if unconditional and events is not None:
            written = await store.assignments.upsert_many_written(
                connection, [write for _, write in unconditional], now
            )
            for index, write in unconditional:
                assignment = written[(write.key.customer_id, write.key.legal_entity_id)]
                results.append(_result(index, _code(assignment.version), write.key))
                events.append(assignment_written(write.key.tenant, assignment))
        elif unconditional:
            versions = await store.assignments.upsert_many(
                connection, [write for _, write in unconditional], now
            )
            for index, write in unconditional:
                version = versions[(write.key.customer_id, write.key.legal_entity_id)]
                results.append(_result(index, _code(version), write.key))
        for index, write in items:
            if write.expected_version is None:
                continue
            conditional = await store.assignments.upsert(connection, write, now)
            if conditional is None:
                results.append(_result(index, CONFLICT, write.key, _VERSION_CHANGED))
                continue
            results.append(_result(index, _code(conditional), write.key))
            if events is not None:  # a rare path: the item is read back for its event
                read_back = await store.assignments.get(connection, write.key)
                assert read_back is not None  # written in this very transaction
                events.append(assignment_written(write.key.tenant, read_back))
    return results


async def _upsert_alone(store: Store, index: int, write: AssignmentWrite) -> BulkItemResult:
    try:
        outcome = await write_assignment(store, write)
    except NotFound as error:
        return _result(index, NOT_FOUND, write.key, ItemFailure.of(error))
    except VersionConflict as error:
        return _result(index, CONFLICT, write.key, ItemFailure.of(error))
    except SQLAlchemyError:
        log.exception("bulk item %d could not be written", index)
        return _result(index, INTERNAL, write.key, ITEM_NOT_WRITTEN)
    return _result(index, CREATED if outcome.created else UPDATED, write.key)


class ValidatedRemovals(NamedTuple):
    invalid: list[BulkItemResult]
    keys: list[tuple[int, AssignmentKey]]


def _validate_removals(
    tenant: str, segment_id: str, first_index: int, chunk: Sequence[BulkRemoveInput]
) -> ValidatedRemovals:
    invalid: list[BulkItemResult] = []
    keys: list[tuple[int, AssignmentKey]] = []
    for index, item in enumerate(chunk, start=first_index):
        try:
            keys.append((index, _key(tenant, segment_id, item.customer_id, item.legal_entity_id)))
        except InvalidArgument as error:
            invalid.append(_invalid(index, item, error))
    return ValidatedRemovals(invalid, keys)


async def _remove(
    store: Store, tenant: str, segment_id: str, chunk: ValidatedRemovals
) -> list[BulkItemResult]:
    results = list(chunk.invalid)
    if chunk.keys:
        async with store.write() as connection:
            if await store.segments.exists(connection, tenant, segment_id):
                pairs = [(key.customer_id, key.legal_entity_id) for _, key in chunk.keys]
                removed = await store.assignments.delete_many(connection, tenant, segment_id, pairs)
                results += [_result(index, UPDATED, key) for index, key in chunk.keys]
                if removed and store.events.enabled:
                    # In request order; an item repeated in the chunk removed its row once.
                    went = set(removed)
                    events = []
                    for _, key in chunk.keys:
                        pair = (key.customer_id, key.legal_entity_id)
                        if pair in went:
                            went.discard(pair)
                            events.append(assignment_deleted(key))
                    await store.events.append(connection, tenant, events, utc_now())
            else:
                gone = ItemFailure.of(NotFound("segment", segment_id))
                results += [_result(index, NOT_FOUND, key, gone) for index, key in chunk.keys]
    return _in_order(results)
