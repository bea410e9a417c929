"""The outbox keeps each tenant's events numbered from 1 with no gap, and a rolled-back
transaction leaves none."""

from __future__ import annotations

import secrets

import pytest

from customer_segments.store.database import utc_now
from customer_segments.store.events import NewEvent
from customer_segments.store.store import Store

pytestmark = pytest.mark.asyncio(loop_scope="session")


class _RolledBack(Exception):
    pass


async def test_sequences_count_per_tenant_and_a_rollback_leaves_no_event(store: Store) -> None:
    tenant, other = f"t{secrets.token_hex(4)}", f"t{secrets.token_hex(4)}"
    created = NewEvent("customer-segment.segment-created", "s1", {"tenant": tenant, "id": "s1"})
    async with store.write() as connection:
        first = await store.events.append(connection, tenant, [created, created], utc_now())
    async with store.write() as connection:
        await store.events.append(connection, other, [created], utc_now())
    with pytest.raises(_RolledBack):
        async with store.write() as connection:
            await store.events.append(connection, tenant, [created], utc_now())
            raise _RolledBack
    async with store.write() as connection:
        third = await store.events.append(connection, tenant, [created], utc_now())
    async with store.read() as connection:
        stored = await store.events.after(connection, tenant, 0, 10)
        oldest = await store.events.oldest_sequence(connection, tenant)
    assert [event.sequence for event in first + third] == [1, 2, 3]
    assert [event.sequence for event in stored] == [1, 2, 3]
    assert len({event.id for event in stored}) == 3
    assert stored[0].payload == {"tenant": tenant, "id": "s1"}
    assert oldest == 1
