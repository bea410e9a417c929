"""Change events: the outbox entries of each write (appended by the write use cases in their
own transaction), watching them (WatchEvents), and pruning them after the retention."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain import events as payloads
from customer_segments.domain import validation
from customer_segments.domain.assignment import Assignment, AssignmentKey
from customer_segments.domain.errors import FailedPrecondition, InvalidArgument, Reason
from customer_segments.domain.events import EVENT_TYPES, EventType
from customer_segments.domain.principal import Principal
from customer_segments.domain.segment import Segment, SegmentStatus
from customer_segments.services.authorization import UseCase, authorize
from customer_segments.store.database import utc_now
from customer_segments.store.events import EventText, NewEvent
from customer_segments.store.notifier import EventNotifier
from customer_segments.store.store import Store

log = logging.getLogger(__name__)

# Events read from the outbox at a time: what a watcher holds, however far behind it is.
WATCH_PAGE = 500
# A watcher re-reads at least this often even without a notification, so that one lost (the
# listener's connection was cut) delays an event, never loses it.
WATCH_SAFETY_INTERVAL_S = 5.0
PRUNE_INTERVAL_S = 60.0
PRUNE_BATCH = 1000
DEFAULT_RETENTION = timedelta(days=7)


def assignment_written(tenant: str, assignment: Assignment) -> NewEvent:
    return NewEvent(
        payloads.assignment_event_type(assignment).value,
        assignment.segment_id,
        payloads.assignment_written(tenant, assignment),
    )


def assignment_deleted(key: AssignmentKey) -> NewEvent:
    return NewEvent(
        EventType.ASSIGNMENT_DELETED.value, key.segment_id, payloads.assignment_deleted(key)
    )


def segment_written(
    tenant: str, segment: Segment, previous_status: SegmentStatus | None
) -> NewEvent:
    """segment-created when there was none before (`previous_status` None), else updated."""
    if previous_status is None:
        return NewEvent(
            EventType.SEGMENT_CREATED.value, segment.id, payloads.segment_created(tenant, segment)
        )
    return NewEvent(
        EventType.SEGMENT_UPDATED.value,
        segment.id,
        payloads.segment_updated(tenant, segment, previous_status),
    )


def segment_deleted(tenant: str, segment_id: str) -> NewEvent:
    return NewEvent(
        EventType.SEGMENT_DELETED.value, segment_id, payloads.segment_deleted(tenant, segment_id)
    )


async def watch_events(
    store: Store,
    principal: Principal,
    tenant: str,
    notifier: EventNotifier,
    *,
    event_types: Sequence[str] = (),
    segment_id: str = "",
    after_sequence: int = 0,
) -> AsyncIterator[EventText]:
    """The tenant's events after `after_sequence` (0: from the oldest retained), first those
    stored, then each as it commits, in sequence order, until the notifier closes (the server
    stops). FailedPrecondition when events after `after_sequence` were pruned already."""
    authorize(principal, UseCase.WATCH_EVENTS, tenant)
    validation.tenant(tenant)
    validation.optional_identifier(segment_id, "segment_id")
    unknown = sorted(set(event_types) - EVENT_TYPES)
    if unknown:
        raise InvalidArgument("event_types", f"unknown event type {unknown[0]!r}")
    if after_sequence < 0:
        raise InvalidArgument("after_sequence", "must be at least 0")
    types = sorted(set(event_types))
    # Subscribed before the first read: an event that commits meanwhile wakes the loop.
    with notifier.subscribe(tenant) as subscription:
        async with store.read() as connection:
            await _require_retained(store, connection, tenant, after_sequence)
        last = after_sequence
        while not notifier.closed:
            subscription.clear()
            async with store.read() as connection:
                page = await store.events.after_as_text(
                    connection, tenant, last, WATCH_PAGE, types=types, segment_id=segment_id
                )
            for event in page:
                yield event
                last = event.sequence
            if len(page) < WATCH_PAGE:
                await subscription.wait(WATCH_SAFETY_INTERVAL_S)


async def _require_retained(
    store: Store, connection: AsyncConnection, tenant: str, after_sequence: int
) -> None:
    if after_sequence == 0:
        return
    oldest = await store.events.oldest_sequence(connection, tenant)
    if oldest is None:  # all pruned, or none yet
        oldest = await store.events.last_sequence(connection, tenant) + 1
    if after_sequence + 1 < oldest:
        raise FailedPrecondition(
            f"The events from sequence {after_sequence + 1} to {oldest - 1} were pruned; the "
            f"oldest retained is {oldest}: watch from after_sequence {oldest - 1}, or 0.",
            str(after_sequence + 1),
            Reason.EVENTS_PRUNED,
        )


async def prune_events(
    store: Store, retention: timedelta, *, interval: float = PRUNE_INTERVAL_S
) -> None:
    """Deletes events older than `retention`, tenant by tenant in batches, every `interval`
    seconds until cancelled (the first time at once). Every serve process runs it; two that
    delete the same rows are harmless."""
    while True:
        try:
            await prune_once(store, retention)
        except Exception:  # the database is away: the next round tries again
            log.warning("pruning old events failed; retrying in %gs", interval, exc_info=True)
        await asyncio.sleep(interval)


async def prune_once(store: Store, retention: timedelta, batch: int = PRUNE_BATCH) -> int:
    """One round of `prune_events`; how many events went."""
    before = utc_now() - retention
    async with store.read() as connection:
        tenants = await store.events.tenants(connection)
    pruned = 0
    for tenant in tenants:
        while True:
            # A transaction per batch: locks held briefly, writers barely notice.
            async with store.write() as connection:
                went = await store.events.prune(connection, tenant, before, batch)
            pruned += went
            if went < batch:
                break
    return pruned
