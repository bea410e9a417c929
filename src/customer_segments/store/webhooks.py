"""Webhook endpoints and their delivery records; the leases that let one process at a time
serve an endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain.webhooks import Delivery, DeliveryStatus, Webhook, WebhookInput
from customer_segments.store.database import DialectInsert
from customer_segments.store.tables import event_sequences, webhook_deliveries, webhook_endpoints

we = webhook_endpoints
wd = webhook_deliveries

_WEBHOOK_COLUMNS = (
    we.c.tenant,
    we.c.id,
    we.c.destination_url,
    we.c.headers,
    we.c.event_types,
    we.c.active,
    we.c.version,
    we.c.created_at,
    we.c.modified_at,
)
_DELIVERY_COLUMNS = (
    wd.c.sequence,
    wd.c.event_id,
    wd.c.status,
    wd.c.attempts,
    wd.c.next_attempt_at,
    wd.c.last_status_code,
    wd.c.last_error,
    wd.c.modified_at,
)


class HeldEndpoint(NamedTuple):
    """What a delivering process needs of an endpoint it holds the lease of."""

    tenant: str
    id: str
    destination_url: str
    secret_key: str
    headers: dict[str, str]
    event_types: tuple[str, ...]
    last_sequence: int
    # The tenant's newest event sequence (0 before its first): work is waiting when above.
    head: int
    version: int


class DeliveryKey(NamedTuple):
    tenant: str
    endpoint_id: str
    sequence: int


def _webhook(row: Any) -> Webhook:
    return Webhook(
        tenant=row.tenant,
        id=row.id,
        destination_url=row.destination_url,
        headers=dict(row.headers),
        event_types=tuple(row.event_types),
        active=bool(row.active),
        version=int(row.version),
        created_at=row.created_at,
        modified_at=row.modified_at,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        sequence=int(row.sequence),
        event_id=row.event_id,
        status=DeliveryStatus(row.status),
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        last_status_code=None if row.last_status_code is None else int(row.last_status_code),
        last_error=row.last_error,
        modified_at=row.modified_at,
    )


def _key(tenant: str, endpoint_id: str) -> Any:
    return and_(we.c.tenant == tenant, we.c.id == endpoint_id)


class WebhookRepository:
    def __init__(self, insert: DialectInsert) -> None:
        self._insert = insert

    # Management ------------------------------------------------------------------------------

    async def count(self, connection: AsyncConnection, tenant: str) -> int:
        found = await connection.execute(select(func.count()).where(we.c.tenant == tenant))
        return int(found.scalar_one())

    async def create(
        self,
        connection: AsyncConnection,
        tenant: str,
        endpoint_id: str,
        given: WebhookInput,
        secret: str,
        now: datetime,
    ) -> Webhook:
        """A new endpoint receives the events committed after it: its cursor starts at the
        tenant's newest sequence."""
        head = await connection.execute(
            select(event_sequences.c.last_sequence).where(event_sequences.c.tenant == tenant)
        )
        row = await connection.execute(
            we.insert()
            .values(
                tenant=tenant,
                id=endpoint_id,
                destination_url=given.destination_url,
                secret_key=secret,
                headers=given.headers,
                event_types=list(given.event_types),
                active=True if given.active is None else given.active,
                last_sequence=head.scalar_one_or_none() or 0,
                version=1,
                created_at=now,
                modified_at=now,
            )
            .returning(*_WEBHOOK_COLUMNS)
        )
        return _webhook(row.one())

    async def get(
        self, connection: AsyncConnection, tenant: str, endpoint_id: str
    ) -> Webhook | None:
        row = await connection.execute(select(*_WEBHOOK_COLUMNS).where(_key(tenant, endpoint_id)))
        found = row.one_or_none()
        return None if found is None else _webhook(found)

    async def list_all(self, connection: AsyncConnection, tenant: str, limit: int) -> list[Webhook]:
        rows = await connection.execute(
            select(*_WEBHOOK_COLUMNS)
            .where(we.c.tenant == tenant)
            .order_by(we.c.created_at, we.c.id)
            .limit(limit)
        )
        return [_webhook(row) for row in rows]

    async def update(
        self,
        connection: AsyncConnection,
        tenant: str,
        endpoint_id: str,
        given: WebhookInput,
        version: int,
        now: datetime,
    ) -> Webhook | None:
        """Writes `given` over the endpoint at `version` (None: it changed meanwhile)."""
        values: dict[str, Any] = {
            "destination_url": given.destination_url,
            "headers": given.headers,
            "event_types": list(given.event_types),
            "version": we.c.version + 1,
            "modified_at": now,
        }
        if given.secret_key:
            values["secret_key"] = given.secret_key
        if given.active is not None:
            values["active"] = given.active
        row = await connection.execute(
            update(we)
            .where(_key(tenant, endpoint_id), we.c.version == version)
            .values(**values)
            .returning(*_WEBHOOK_COLUMNS)
        )
        found = row.one_or_none()
        return None if found is None else _webhook(found)

    async def delete(self, connection: AsyncConnection, tenant: str, endpoint_id: str) -> None:
        # The records first: SQLite enforces no foreign key (nor its cascade) by default.
        await connection.execute(
            delete(wd).where(wd.c.tenant == tenant, wd.c.endpoint_id == endpoint_id)
        )
        await connection.execute(delete(we).where(_key(tenant, endpoint_id)))

    async def deliveries(
        self,
        connection: AsyncConnection,
        tenant: str,
        endpoint_id: str,
        status: DeliveryStatus | None,
        after_sequence: int,
        limit: int,
    ) -> list[Delivery]:
        conditions = [
            wd.c.tenant == tenant,
            wd.c.endpoint_id == endpoint_id,
            wd.c.sequence > after_sequence,
        ]
        if status is not None:
            conditions.append(wd.c.status == status.value)
        rows = await connection.execute(
            select(*_DELIVERY_COLUMNS).where(*conditions).order_by(wd.c.sequence).limit(limit)
        )
        return [_delivery(row) for row in rows]

    async def delivery(
        self, connection: AsyncConnection, tenant: str, endpoint_id: str, sequence: int
    ) -> Delivery | None:
        row = await connection.execute(
            select(*_DELIVERY_COLUMNS).where(
                wd.c.tenant == tenant, wd.c.endpoint_id == endpoint_id, wd.c.sequence == sequence
            )
        )
        found = row.one_or_none()
        return None if found is None else _delivery(found)

    async def queue_retry(
        self,
        connection: AsyncConnection,
        tenant: str,
        endpoint_id: str,
        sequence: int,
        now: datetime,
    ) -> Delivery | None:
        """FAILED -> RETRYING (None: it is not FAILED)."""
        row = await connection.execute(
            update(wd)
            .where(
                wd.c.tenant == tenant,
                wd.c.endpoint_id == endpoint_id,
                wd.c.sequence == sequence,
                wd.c.status == DeliveryStatus.FAILED.value,
            )
            .values(status=DeliveryStatus.RETRYING.value, next_attempt_at=now, modified_at=now)
            .returning(*_DELIVERY_COLUMNS)
        )
        found = row.one_or_none()
        return None if found is None else _delivery(found)

    # Delivery ---------------------------------------------------------------------------------

    async def claim(
        self,
        connection: AsyncConnection,
        owner: str,
        now: datetime,
        until: datetime,
        renew_before: datetime,
    ) -> None:
        """Takes every active endpoint whose lease is free or has run out, and renews this
        owner's leases that end before `renew_before`: one statement (the row locks make two
        processes' claims of one endpoint one after the other, and the second finds it taken)."""
        await connection.execute(
            update(we)
            .where(
                we.c.active.is_(True),
                or_(
                    we.c.lease_owner.is_(None),
                    we.c.lease_until < now,
                    and_(we.c.lease_owner == owner, we.c.lease_until < renew_before),
                ),
            )
            .values(lease_owner=owner, lease_until=until)
        )

    async def held(
        self, connection: AsyncConnection, owner: str, now: datetime
    ) -> list[HeldEndpoint]:
        """The active endpoints whose unexpired lease `owner` holds, with their tenant's head."""
        rows = await connection.execute(
            select(
                we.c.tenant,
                we.c.id,
                we.c.destination_url,
                we.c.secret_key,
                we.c.headers,
                we.c.event_types,
                we.c.last_sequence,
                func.coalesce(event_sequences.c.last_sequence, 0).label("head"),
                we.c.version,
            )
            .select_from(we.outerjoin(event_sequences, event_sequences.c.tenant == we.c.tenant))
            .where(we.c.lease_owner == owner, we.c.lease_until >= now, we.c.active.is_(True))
        )
        return [
            HeldEndpoint(
                row.tenant,
                row.id,
                row.destination_url,
                row.secret_key,
                dict(row.headers),
                tuple(row.event_types),
                int(row.last_sequence),
                int(row.head),
                int(row.version),
            )
            for row in rows
        ]

    async def release(self, connection: AsyncConnection, owner: str) -> None:
        await connection.execute(
            update(we).where(we.c.lease_owner == owner).values(lease_owner=None, lease_until=None)
        )

    async def advance(
        self, connection: AsyncConnection, tenant: str, endpoint_id: str, owner: str, sequence: int
    ) -> bool:
        """Moves the cursor to `sequence` while `owner` holds the lease (False: it lost it)."""
        result = await connection.execute(
            update(we)
            .where(
                _key(tenant, endpoint_id),
                we.c.lease_owner == owner,
                we.c.last_sequence <= sequence,
            )
            .values(last_sequence=sequence)
        )
        return bool(result.rowcount)

    async def disable(
        self, connection: AsyncConnection, tenant: str, endpoint_id: str, owner: str, now: datetime
    ) -> None:
        """The receiver answered 410 Gone: the endpoint turns inactive, its lease free."""
        await connection.execute(
            update(we)
            .where(_key(tenant, endpoint_id), we.c.lease_owner == owner)
            .values(
                active=False,
                lease_owner=None,
                lease_until=None,
                version=we.c.version + 1,
                modified_at=now,
            )
        )

    async def record(
        self,
        connection: AsyncConnection,
        key: DeliveryKey,
        event_id: str,
        status: DeliveryStatus,
        attempts: int,
        next_attempt_at: datetime | None,
        last_status_code: int | None,
        last_error: str | None,
        now: datetime,
    ) -> None:
        values = {
            "status": status.value,
            "attempts": attempts,
            "next_attempt_at": next_attempt_at,
            "last_status_code": last_status_code,
            "last_error": None if last_error is None else last_error[:1024],
            "modified_at": now,
        }
        statement = self._insert(wd).values(
            tenant=key.tenant,
            endpoint_id=key.endpoint_id,
            sequence=key.sequence,
            event_id=event_id,
            **values,
        )
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=[wd.c.tenant, wd.c.endpoint_id, wd.c.sequence], set_=values
            )
        )

    async def forget(self, connection: AsyncConnection, key: DeliveryKey) -> None:
        await connection.execute(
            delete(wd).where(
                wd.c.tenant == key.tenant,
                wd.c.endpoint_id == key.endpoint_id,
                wd.c.sequence == key.sequence,
            )
        )

    async def in_progress(
        self, connection: AsyncConnection, tenant: str, endpoint_id: str
    ) -> list[Delivery]:
        """The endpoint's PENDING delivery (the one its order waits for; at most one) and the
        RETRYING ones, oldest first."""
        rows = await connection.execute(
            select(*_DELIVERY_COLUMNS)
            .where(
                wd.c.tenant == tenant,
                wd.c.endpoint_id == endpoint_id,
                wd.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.RETRYING.value]),
            )
            .order_by(wd.c.sequence)
        )
        return [_delivery(row) for row in rows]

    async def retrying(self, connection: AsyncConnection, owner: str) -> set[tuple[str, str]]:
        """The (tenant, endpoint) of the endpoints `owner` holds that have a RETRYING delivery."""
        rows = await connection.execute(
            select(wd.c.tenant, wd.c.endpoint_id)
            .select_from(wd.join(we, and_(we.c.tenant == wd.c.tenant, we.c.id == wd.c.endpoint_id)))
            .where(wd.c.status == DeliveryStatus.RETRYING.value, we.c.lease_owner == owner)
            .distinct()
        )
        return {(row.tenant, row.endpoint_id) for row in rows}
