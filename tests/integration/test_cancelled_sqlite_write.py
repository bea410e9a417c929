"""A write cancelled in the middle of a statement (a deadline, a stopping task) leaves SQLite
writable: the next write goes through at once instead of waiting out the busy timeout and
failing with "database is locked"."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from customer_segments.domain.errors import Unavailable
from customer_segments.store.database import Database


async def test_a_write_cancelled_inside_a_statement_releases_the_write_lock(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'cancelled.db'}", sqlite_busy_timeout_ms=500)
    running = threading.Event()

    def slow(value: Any) -> Any:  # runs in aiosqlite's thread, inside the statement
        running.set()
        time.sleep(0.3)
        return value

    async def cancelled_write() -> None:
        async with database.write() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.create_function("slow", 1, slow)
            await connection.execute(text("INSERT INTO t (v) VALUES ('taken')"))
            # Cancelled while SQLite produces the first row: the statement stays pending.
            await connection.execute(text("SELECT slow(v) FROM t"))

    try:
        async with database.write() as connection:
            await connection.execute(text("CREATE TABLE t (v TEXT)"))
        task = asyncio.create_task(cancelled_write())
        assert await asyncio.to_thread(running.wait, 30), "the statement never ran"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # `task` keeps the cancellation's traceback, and with it the pending statement: what
        # used to keep the cancelled transaction, and its lock, alive.
        try:
            async with database.write() as connection:
                await connection.execute(text("INSERT INTO t (v) VALUES ('next')"))
        except Unavailable as error:
            pytest.fail(f"the cancelled write still holds the lock: {error}")
        async with database.read() as connection:
            values = (await connection.execute(text("SELECT v FROM t"))).scalars().all()
        assert values == ["next"], "the cancelled write must roll back, the next one commit"
    finally:
        await database.dispose()
