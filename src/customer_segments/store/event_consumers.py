"""Consumers of the outbox that publish elsewhere (the NATS publisher): one cursor per tenant,
held by one process at a time through a lease.

A process may take a tenant's row when nobody holds it, when its lease has run out (its holder
died or stalled) or when it holds it already; it renews the lease each time it advances the
cursor. So with several workers or instances each event is published once in the normal case,
and a dead holder's tenants are taken over once its lease has run out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.store.database import DialectInsert
from customer_segments.store.tables import event_consumers, event_sequences


class Claim(NamedTuple):
    """A tenant whose cursor this process holds, and where the cursor stands."""

    tenant: str
    last_sequence: int


def _takeable(owner: str, now: datetime) -> Any:
    return or_(
        event_consumers.c.lease_owner == owner,
        event_consumers.c.lease_until.is_(None),
        event_consumers.c.lease_until < now,
    )


class EventConsumerRepository:
    def __init__(self, insert: DialectInsert) -> None:
        self._insert = insert

    async def tenants_with_work(
        self, connection: AsyncConnection, consumer: str, owner: str, now: datetime
    ) -> list[str]:
        """Tenants with events past `consumer`'s cursor that `owner` may take, and tenants the
        consumer has no row for yet (new ones, found through their sequence counter). One read
        of a row per tenant: cheap enough to poll."""
        mine = and_(
            event_consumers.c.tenant == event_sequences.c.tenant,
            event_consumers.c.consumer == consumer,
        )
        rows = await connection.execute(
            select(event_sequences.c.tenant)
            .select_from(event_sequences.outerjoin(event_consumers, mine))
            .where(
                or_(
                    event_consumers.c.tenant.is_(None),
                    and_(
                        event_consumers.c.last_sequence < event_sequences.c.last_sequence,
                        _takeable(owner, now),
                    ),
                )
            )
            .order_by(event_sequences.c.tenant)
        )
        return [row.tenant for row in rows]

    async def claim(
        self,
        connection: AsyncConnection,
        consumer: str,
        owner: str,
        tenants: Sequence[str],
        now: datetime,
        until: datetime,
    ) -> list[Claim]:
        """Takes (or renews) the lease of each of `tenants` that `owner` may take, a new
        tenant's cursor starting before its first event; the ones taken, in tenant order.
        Another process's live lease is left alone: on PostgreSQL a concurrent claim waits for
        the row and then finds it taken."""
        if not tenants:
            return []
        await connection.execute(
            self._insert(event_consumers)
            .values(
                [{"consumer": consumer, "tenant": tenant, "last_sequence": 0} for tenant in tenants]
            )
            .on_conflict_do_nothing(
                index_elements=[event_consumers.c.tenant, event_consumers.c.consumer]
            )
        )
        rows = await connection.execute(
            update(event_consumers)
            .where(
                event_consumers.c.consumer == consumer,
                event_consumers.c.tenant.in_(tenants),
                _takeable(owner, now),
            )
            .values(lease_owner=owner, lease_until=until)
            .returning(event_consumers.c.tenant, event_consumers.c.last_sequence)
        )
        return sorted(Claim(row.tenant, int(row.last_sequence)) for row in rows)

    async def advance(
        self,
        connection: AsyncConnection,
        consumer: str,
        owner: str,
        tenant: str,
        last_sequence: int,
        until: datetime,
    ) -> bool:
        """Moves the cursor to `last_sequence` and renews the lease, if `owner` still holds
        it; False when it does not (taken over after it ran out): the caller stops there."""
        result = await connection.execute(
            update(event_consumers)
            .where(
                event_consumers.c.tenant == tenant,
                event_consumers.c.consumer == consumer,
                event_consumers.c.lease_owner == owner,
            )
            .values(last_sequence=last_sequence, lease_until=until)
        )
        return bool(result.rowcount)

    async def release(self, connection: AsyncConnection, consumer: str, owner: str) -> None:
        """Gives up every lease `owner` holds (on a clean stop: others take over at once)."""
        await connection.execute(
            update(event_consumers)
            .where(event_consumers.c.consumer == consumer, event_consumers.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )
