"""Database.check, behind gRPC health and /readyz: it answers on a connection of its own, and
says why when the database does not answer."""

from __future__ import annotations

import asyncio

from customer_segments.store.database import Database
from customer_segments.store.store import Store
from tests.e2e.test_service_process import free_port


async def test_the_check_does_not_wait_for_the_pools(store: Store) -> None:
    """Every pooled connection taken by calls (one per pool here): the check still answers."""
    database = Database(
        store.database.url.render_as_string(hide_password=False),
        pool_size=1,
        read_pool_size=1,
        expensive_read_pool_size=1,
        pool_timeout_s=60,
    )
    try:
        async with database.read(), database.write(), database.expensive_read(60_000):
            assert await asyncio.wait_for(database.check(), 30) is None
    finally:
        await database.dispose()


async def test_a_database_that_does_not_answer_is_named_with_the_reason() -> None:
    database = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        reason = await asyncio.wait_for(database.check(), 30)
    finally:
        await database.dispose()
    assert reason is not None and "refused" in reason.lower(), reason
