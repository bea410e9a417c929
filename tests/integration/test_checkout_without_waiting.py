"""A read on a connection of its own (FastRead.one_alone) takes an idle connection from the
read pool without a greenlet, and falls back to greenlet_spawn wherever the pool would have to
await: first connections, a connection the server closed, every connection handed out. On
real PostgreSQL; the pool's books must balance after each."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from sqlalchemy import func, literal_column, select
from sqlalchemy.pool import QueuePool

from customer_segments.store.database import Database, FastRead
from tests.conftest import fresh_postgres_database

POOL_SIZE = 2


@pytest_asyncio.fixture(loop_scope="session")
async def database() -> AsyncIterator[Database]:
    with fresh_postgres_database("cs_checkout") as url:
        database = Database(url, pool_size=1, read_pool_size=POOL_SIZE)
        try:
            yield database
        finally:
            await database.dispose()


def _read_pool(database: Database) -> QueuePool:
    pool = database.engines[1].sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool


def _backend_pid(database: Database) -> FastRead:
    return database.fast_read(select(func.pg_backend_pid().label("pid")))


async def test_first_connections_are_made_then_idle_ones_taken_without_waiting(
    database: Database,
) -> None:
    pool = _read_pool(database)
    statement = _backend_pid(database)
    checkout = statement._driver._checkout  # type: ignore[union-attr]
    assert checkout.without_waiting() is None  # nothing idle yet: the pool must connect
    assert pool.checkedout() == 0
    first = await statement.one_alone({})
    assert first is not None and pool.checkedin() == 1
    taken = checkout.without_waiting()
    assert taken is not None and pool.checkedout() == 1
    taken.close()
    pids = {(await statement.one_alone({}))["pid"] for _ in range(5)}  # type: ignore[index]
    assert pids == {first["pid"]}  # the one idle connection, again and again
    assert pool.checkedout() == 0 and pool.checkedin() == 1


async def test_a_connection_the_server_closed_is_replaced(database: Database) -> None:
    pool = _read_pool(database)
    statement = _backend_pid(database)
    checkout = statement._driver._checkout  # type: ignore[union-attr]
    old = (await statement.one_alone({}))["pid"]  # type: ignore[index]
    admin = await asyncpg.connect(str(database.url.set(drivername="postgresql")))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", old)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # asyncpg sees the socket close
    # Replacing it needs a connect: no connection without waiting, and no warning of a connect
    # coroutine never awaited either (the pool was not asked).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkout.without_waiting() is None
    assert pool.checkedout() == 0
    new = (await statement.one_alone({}))["pid"]  # type: ignore[index]
    assert new != old
    assert pool.checkedout() == 0 and pool.checkedin() <= POOL_SIZE


async def test_calls_beyond_the_pool_wait_for_a_connection(database: Database) -> None:
    pool = _read_pool(database)
    slow = database.fast_read(
        select(func.pg_sleep(literal_column("0.2")), func.pg_backend_pid().label("pid"))
    )
    checkout = slow._driver._checkout  # type: ignore[union-attr]
    calls = [asyncio.ensure_future(slow.one_alone({})) for _ in range(3 * POOL_SIZE)]
    await asyncio.sleep(0.1)
    assert pool.checkedout() == POOL_SIZE
    assert checkout.without_waiting() is None  # all handed out: it would have to wait
    answers = await asyncio.gather(*calls)
    assert len({answer["pid"] for answer in answers if answer}) == POOL_SIZE
    assert pool.checkedout() == 0 and pool.checkedin() == POOL_SIZE


async def test_the_pool_is_not_asked_for_a_connection_it_would_replace(
    database: Database,
) -> None:
    """Had it been asked, it would have warned of a connect coroutine never awaited: warnings
    are errors here."""
    pool = _read_pool(database)
    statement = _backend_pid(database)
    checkout = statement._driver._checkout  # type: ignore[union-attr]
    await asyncio.gather(*(statement.one_alone({}) for _ in range(POOL_SIZE)))
    assert pool.checkedin() == POOL_SIZE
    pool._invalidate_time = time.time() + 1  # as after SQLAlchemy saw a disconnect
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkout.without_waiting() is None
    assert pool.checkedout() == 0
    pool._invalidate_time = 0
    assert (await statement.one_alone({})) is not None
