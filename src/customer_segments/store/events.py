"""The outbox: change events appended in the transaction of their change, read back in
sequence order by the watchers and the publishers (webhooks, NATS)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, Text, bindparam, cast, delete, func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain.events import EventType, assignment_payload, instant
from customer_segments.store.database import DialectInsert, dump_document, load_document
from customer_segments.store.tables import UtcDateTime, event_batches, event_sequences, events

# The PostgreSQL channel whose notifications (payload: the tenant) say "a tenant has new
# events": sent by the writing transaction, delivered when it commits (store/notifier.py).
CHANNEL = "customer_segments_events"


class NewEvent(NamedTuple):
    type: str
    # The segment it is about ("" for none).
    segment_id: str
    payload: dict[str, Any]


# The counter's upsert, its notification and the events' INSERT in one statement; the
# sequences are the counter's newest minus the count plus each event's position.
_APPEND_POSTGRESQL = text(
    """
    WITH counter AS (
        INSERT INTO event_sequences AS counted (tenant, last_sequence)
        VALUES (CAST(:tenant AS varchar), CAST(:count AS bigint))
        ON CONFLICT (tenant) DO UPDATE
            SET last_sequence = counted.last_sequence + CAST(:count AS bigint)
        RETURNING last_sequence, pg_notify(CAST(:channel AS text), CAST(:tenant AS text))
    ),
    appended AS (
        INSERT INTO events (tenant, sequence, id, type, segment_id, occurred_at, payload)
        SELECT CAST(:tenant AS varchar), counter.last_sequence - CAST(:count AS bigint) + item.n,
            item.id, item.type, item.segment_id, CAST(:occurred_at AS timestamptz),
            CAST(item.payload AS jsonb)
        FROM counter, unnest(CAST(:ids AS varchar[]), CAST(:types AS varchar[]),
                             CAST(:segment_ids AS varchar[]), CAST(:payloads AS text[]))
            WITH ORDINALITY AS item(id, type, segment_id, payload, n)
        RETURNING sequence
    )
    SELECT max(sequence) FROM appended
    """
).bindparams(bindparam("occurred_at", type_=UtcDateTime))


class StoredEvent(NamedTuple):
    tenant: str
    sequence: int
    id: str
    type: str
    segment_id: str
    occurred_at: datetime
    payload: dict[str, Any]


class EventText(NamedTuple):
    """A stored event whose payload is JSON text."""

    tenant: str
    sequence: int
    id: str
    type: str
    segment_id: str
    occurred_at: datetime
    payload_json: str


def _after(
    payload: ColumnElement[Any],
    tenant: str,
    after_sequence: int,
    limit: int,
    types: Sequence[str],
    segment_id: str,
) -> Select[Any]:
    c = events.c
    statement = select(c.tenant, c.sequence, c.id, c.type, c.segment_id, c.occurred_at, payload)
    statement = statement.where(c.tenant == tenant, c.sequence > after_sequence)
    if types:
        statement = statement.where(c.type.in_(types))
    if segment_id:
        statement = statement.where(c.segment_id == segment_id)
    return statement.order_by(c.sequence).limit(limit)


# What a batch (event_batches) holds: the events a bulk chunk's items wrote.
BATCHED_TYPES = frozenset({EventType.ASSIGNMENT_CREATED, EventType.ASSIGNMENT_UPDATED})


# How far past `after_sequence` one read of the outbox looks for batches, in events per event
# wanted: the next N events of an unfiltered read lie within N sequences (the sequence has no
# gap), so a batch starting further cannot hold them; filtered reads look further, page by page.
_FILTERED_BATCH_SPAN = 4


def _batches_after(
    tenant: str, after_sequence: int, limit: int, segment_id: str, up_to: int
) -> Select[Any]:
    """The batches holding events above `after_sequence` whose first event is at most `up_to`
    (a batch's sequence is its last, `count` its events)."""
    b = event_batches.c
    statement = select(event_batches).where(
        b.tenant == tenant, b.sequence > after_sequence, b.sequence - b.count < up_to
    )
    if segment_id:
        statement = statement.where(b.segment_id == segment_id)
    return statement.order_by(b.sequence).limit(limit)


class _Batch:
    """An event_batches row, with what all its events share computed once."""

    __slots__ = ("created_ats", "id_prefix", "mixins", "modified_at", "row", "written")

    def __init__(self, row: Row[Any]) -> None:
        self.row = row
        self.modified_at = instant(row.occurred_at)
        # Item n's id: the batch's UUID with n as its last 8 hex digits, the same at every
        # read; the other 90 random bits keep batches apart.
        self.id_prefix = row.id[:-8]
        self.written = {
            pair: at
            for at, pair in enumerate(
                zip(row.written_customer_ids, row.written_legal_entity_ids, strict=True)
            )
        }
        self.created_ats: dict[datetime, str] = {}
        self.mixins: dict[str, Any] = {}

    def created_at(self, at: int) -> str:
        moment = self.row.created_ats[at]
        found = self.created_ats.get(moment)
        if found is None:  # most items of a chunk share one instant: formatted once
            found = self.created_ats[moment] = instant(moment)
        return found

    def mixins_of(self, n: int) -> Any:
        """Item n's mixins; items giving the same text share one (read-only) object."""
        text = self.row.mixins[n]
        found = self.mixins.get(text)
        if found is None:  # most items of a chunk give the same mixins (often none): read once
            found = self.mixins[text] = load_document(text)
        return found


class _BatchedEvent(NamedTuple):
    """Item `n` of `batch`, whose write is at position `at` of what the batch wrote; its
    payload is built only when it is asked for (a read finds more than it keeps)."""

    sequence: int
    type: str
    batch: _Batch
    n: int
    at: int

    def _header(self) -> tuple[str, int, str, str, str, datetime]:
        row = self.batch.row
        event_id = f"{self.batch.id_prefix}{self.n:08x}"
        return row.tenant, self.sequence, event_id, self.type, row.segment_id, row.occurred_at

    def _payload(self) -> dict[str, Any]:
        batch, row, n, at = self.batch, self.batch.row, self.n, self.at
        legal_entity_id = row.legal_entity_ids[n]
        return assignment_payload(
            row.tenant,
            row.segment_id,
            row.assignment_type,
            (row.customer_ids[n], row.first_names[at], row.last_names[at], row.emails[at]),
            (legal_entity_id, row.legal_entity_names[at]) if legal_entity_id else None,
            (batch.created_at(at), batch.modified_at, int(row.versions[at])),
            batch.mixins_of(n),
        )

    def stored(self) -> StoredEvent:
        return StoredEvent(*self._header(), self._payload())

    def text(self) -> EventText:
        return EventText(*self._header(), dump_document(self._payload()))


_CREATED, _UPDATED = EventType.ASSIGNMENT_CREATED.value, EventType.ASSIGNMENT_UPDATED.value


def _unbatched(
    row: Row[Any], after_sequence: int, limit: int, types: Sequence[str]
) -> list[_BatchedEvent]:
    """The first `limit` events of a batch above `after_sequence` (of `types` when given), in
    request order: item n has sequence `first + n`. No read keeps more than `limit` of one
    batch, so the rest of a large batch is not even looked at."""
    batch = _Batch(row)
    first = row.sequence - row.count + 1
    customer_ids, legal_entity_ids, versions = row.customer_ids, row.legal_entity_ids, row.versions
    found = []
    for n in range(max(0, after_sequence + 1 - first), len(customer_ids)):
        at = batch.written[customer_ids[n], legal_entity_ids[n]]
        event_type = _CREATED if versions[at] == 1 else _UPDATED
        if not types or event_type in types:
            found.append(_BatchedEvent(first + n, event_type, batch, n, at))
            if len(found) == limit:
                break
    return found


class EventRepository:
    """`enabled` False (--no-events): `append` stores nothing, and the write paths, which ask
    `enabled`, do not even build the payloads."""

    def __init__(self, insert: DialectInsert, dialect: str, *, enabled: bool = True) -> None:
        self._insert = insert
        self.enabled = enabled
        self._postgresql = dialect == "postgresql"
        # One batch of old events, found through the (tenant, occurred_at) index.
        old = (
            select(events.c.sequence)
            .where(
                events.c.tenant == bindparam("tenant"), events.c.occurred_at < bindparam("before")
            )
            .order_by(events.c.occurred_at)
            .limit(bindparam("batch"))
        )
        self._prune = delete(events).where(
            events.c.tenant == bindparam("tenant"), events.c.sequence.in_(old.scalar_subquery())
        )
        b = event_batches.c
        old_batches = (
            select(b.sequence)
            .where(b.tenant == bindparam("tenant"), b.occurred_at < bindparam("before"))
            .order_by(b.occurred_at)
            .limit(bindparam("batch"))
        )
        self._prune_batches = (
            delete(event_batches)
            .where(b.tenant == bindparam("tenant"), b.sequence.in_(old_batches.scalar_subquery()))
            .returning(b.count)
        )

    async def append(
        self,
        connection: AsyncConnection,
        tenant: str,
        new_events: Sequence[NewEvent],
        occurred_at: datetime,
    ) -> list[StoredEvent]:
        """Stores `new_events` in the caller's transaction, numbered after the tenant's last.

        Two statements whatever their number (one on PostgreSQL, which also sends the
        notification that the tenant has new events, delivered at commit): the counter's
        upsert, whose row lock holds every other writer of the tenant until this transaction
        ends (so sequence order is commit order, and a reader that has seen N never later
        finds a smaller one), and one INSERT. Call it last in the transaction, to hold that
        lock for as short as possible."""
        if not new_events or not self.enabled:
            return []
        count = len(new_events)
        ids = [str(uuid.uuid4()) for _ in new_events]
        if self._postgresql:
            last = await self._append_postgresql(connection, tenant, new_events, ids, occurred_at)
        else:
            counter = self._insert(event_sequences).values(tenant=tenant, last_sequence=count)
            counter = counter.on_conflict_do_update(
                index_elements=[event_sequences.c.tenant],
                set_={"last_sequence": event_sequences.c.last_sequence + count},
            ).returning(event_sequences.c.last_sequence)
            last = int((await connection.execute(counter)).scalar_one())
        stored = [
            StoredEvent(
                tenant,
                last - count + 1 + n,
                event_id,
                event.type,
                event.segment_id,
                occurred_at,
                event.payload,
            )
            for n, (event, event_id) in enumerate(zip(new_events, ids, strict=True))
        ]
        if not self._postgresql:
            await connection.execute(events.insert(), [row._asdict() for row in stored])
        return stored

    async def _append_postgresql(
        self,
        connection: AsyncConnection,
        tenant: str,
        new_events: Sequence[NewEvent],
        ids: list[str],
        occurred_at: datetime,
    ) -> int:
        """The counter's upsert and the INSERT as one statement (one round trip, the events as
        a few arrays rather than a parameter set per row: 13,973 against 12,236 rows/s with 4
        writers in bench/schema_ceiling.py's set-up, and a round trip less per chunk); the
        pg_notify rides in it. The tenant's newest sequence."""
        found = await connection.execute(
            _APPEND_POSTGRESQL,
            {
                "tenant": tenant,
                "count": len(new_events),
                "channel": CHANNEL,
                "occurred_at": occurred_at,
                "ids": ids,
                "types": [event.type for event in new_events],
                "segment_ids": [event.segment_id for event in new_events],
                "payloads": [dump_document(event.payload) for event in new_events],
            },
        )
        return int(found.scalar_one())

    async def after(
        self,
        connection: AsyncConnection,
        tenant: str,
        after_sequence: int,
        limit: int,
        *,
        types: Sequence[str] = (),
        segment_id: str = "",
    ) -> list[StoredEvent]:
        """The tenant's events with a sequence above `after_sequence`, oldest first, at most
        `limit` (fewer only when no more are stored); only of `types` when given, only about
        `segment_id` when given."""
        found = await self._outbox(
            connection, events.c.payload, tenant, after_sequence, limit, types, segment_id
        )
        return [
            StoredEvent._make(event) if isinstance(event, Row) else event.stored()
            for event in found
        ]

    async def after_as_text(
        self,
        connection: AsyncConnection,
        tenant: str,
        after_sequence: int,
        limit: int,
        *,
        types: Sequence[str] = (),
        segment_id: str = "",
    ) -> list[EventText]:
        """`after`, with each payload as JSON text, as the database holds it: for a stream
        that sends it on as text, it is not parsed and written out again (WatchEvents)."""
        payload = cast(events.c.payload, Text)
        found = await self._outbox(
            connection, payload, tenant, after_sequence, limit, types, segment_id
        )
        return [
            EventText._make(event) if isinstance(event, Row) else event.text() for event in found
        ]

    async def _outbox(
        self,
        connection: AsyncConnection,
        payload: ColumnElement[Any],
        tenant: str,
        after_sequence: int,
        limit: int,
        types: Sequence[str],
        segment_id: str,
    ) -> list[Row[Any] | _BatchedEvent]:
        """The events table's rows and the batches' events (PostgreSQL), merged in sequence
        order. Pages of both are read until `limit` events are found or both are exhausted: a
        page of batches may hold none of `types`, and a short answer means "no more"."""
        found: list[Row[Any] | _BatchedEvent] = []
        with_batches = self._postgresql and (not types or not BATCHED_TYPES.isdisjoint(types))
        while True:
            wanted = limit - len(found)
            rows = list(
                await connection.execute(
                    _after(payload, tenant, after_sequence, wanted, types, segment_id)
                )
            )
            # Past the last row of a full page, rows not read yet may come first.
            horizon = rows[-1].sequence if len(rows) == wanted else None
            merged: list[Row[Any] | _BatchedEvent] = list(rows)
            if with_batches:
                span = _FILTERED_BATCH_SPAN if types or segment_id else 1
                up_to = after_sequence + span * wanted
                batches = list(
                    await connection.execute(
                        _batches_after(tenant, after_sequence, wanted, segment_id, up_to)
                    )
                )
                # Every batch starting at most `up_to` was read, unless the page was full.
                seen = batches[-1].sequence if batches else 0
                batch_horizon = seen if len(batches) == wanted else max(seen, up_to)
                if horizon is not None or batch_horizon < await self.last_sequence(
                    connection, tenant
                ):
                    horizon = batch_horizon if horizon is None else min(horizon, batch_horizon)
                for batch in batches:
                    merged += _unbatched(batch, after_sequence, wanted, types)
                merged.sort(key=lambda event: event.sequence)
            if horizon is not None:
                merged = [event for event in merged if event.sequence <= horizon]
            found += merged[:wanted]
            if len(found) >= limit or horizon is None:
                return found
            after_sequence = horizon

    async def last_sequence(self, connection: AsyncConnection, tenant: str) -> int:
        """The sequence of the tenant's newest event, pruned or not (0 before its first)."""
        found = await connection.execute(
            select(event_sequences.c.last_sequence).where(event_sequences.c.tenant == tenant)
        )
        value = found.scalar()
        return 0 if value is None else int(value)

    async def last_sequences(
        self, connection: AsyncConnection, tenants: Sequence[str]
    ) -> dict[str, int]:
        """`last_sequence` of several tenants at once (those without events are left out)."""
        found = await connection.execute(
            select(event_sequences.c.tenant, event_sequences.c.last_sequence).where(
                event_sequences.c.tenant.in_(tenants)
            )
        )
        return {tenant: int(last) for tenant, last in found}

    async def tenants(self, connection: AsyncConnection) -> list[str]:
        """Every tenant that ever had an event."""
        return list((await connection.execute(select(event_sequences.c.tenant))).scalars())

    async def prune(
        self, connection: AsyncConnection, tenant: str, before: datetime, batch: int
    ) -> int:
        """Deletes at most `batch` of the tenant's events that occurred before `before`, oldest
        first; how many went. Deleting what another process deleted already is harmless."""
        params = {"tenant": tenant, "before": before, "batch": batch}
        went = int((await connection.execute(self._prune, params)).rowcount)
        if self._postgresql:
            batches = await connection.execute(self._prune_batches, params)
            went += sum(count for (count,) in batches)
        return went

    async def oldest_sequence(self, connection: AsyncConnection, tenant: str) -> int | None:
        """The sequence of the tenant's oldest retained event (None when none is)."""
        found = await connection.execute(
            select(func.min(events.c.sequence)).where(events.c.tenant == tenant)
        )
        oldest = [found.scalar_one()]
        if self._postgresql:
            b = event_batches.c
            first = func.min(b.sequence - b.count + 1)
            oldest.append(
                (await connection.execute(select(first).where(b.tenant == tenant))).scalar_one()
            )
        values = [int(value) for value in oldest if value is not None]
        return min(values) if values else None
