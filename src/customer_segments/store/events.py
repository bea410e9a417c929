"""The outbox: change events appended in the transaction of their change, read back in
sequence order by the watchers and the publishers (webhooks, NATS)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.store.database import DialectInsert
from customer_segments.store.tables import event_sequences, events


class NewEvent(NamedTuple):
    type: str
    # The segment it is about ("" for none).
    segment_id: str
    payload: dict[str, Any]


class StoredEvent(NamedTuple):
    tenant: str
    sequence: int
    id: str
    type: str
    segment_id: str
    occurred_at: datetime
    payload: dict[str, Any]


class EventRepository:
    def __init__(self, insert: DialectInsert) -> None:
        self._insert = insert

    async def append(
        self,
        connection: AsyncConnection,
        tenant: str,
        new_events: Sequence[NewEvent],
        occurred_at: datetime,
    ) -> list[StoredEvent]:
        """Stores `new_events` in the caller's transaction, numbered after the tenant's last.

        Two statements whatever their number: the counter's upsert, whose row lock holds every
        other writer of the tenant until this transaction ends (so sequence order is commit
        order, and a reader that has seen N never later finds a smaller one), and one INSERT.
        Call it last in the transaction, to hold that lock for as short as possible."""
        if not new_events:
            return []
        count = len(new_events)
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
                str(uuid.uuid4()),
                event.type,
                event.segment_id,
                occurred_at,
                event.payload,
            )
            for n, event in enumerate(new_events)
        ]
        await connection.execute(events.insert(), [row._asdict() for row in stored])
        return stored

    async def after(
        self,
        connection: AsyncConnection,
        tenant: str,
        after_sequence: int,
        limit: int,
    ) -> list[StoredEvent]:
        """The tenant's events with a sequence above `after_sequence`, oldest first."""
        rows = await connection.execute(
            select(*events.c)
            .where(events.c.tenant == tenant, events.c.sequence > after_sequence)
            .order_by(events.c.sequence)
            .limit(limit)
        )
        return [StoredEvent(*row) for row in rows]

    async def oldest_sequence(self, connection: AsyncConnection, tenant: str) -> int | None:
        """The sequence of the tenant's oldest retained event (None when none is)."""
        found = await connection.execute(
            select(func.min(events.c.sequence)).where(events.c.tenant == tenant)
        )
        value = found.scalar_one()
        return None if value is None else int(value)
