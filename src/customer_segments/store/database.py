"""Engine set-up and transactions: one code path for PostgreSQL (asyncpg) and SQLite.

Reads on PostgreSQL run in autocommit mode: a single SELECT needs no BEGIN/ROLLBACK round
trips. Writes run in one transaction each; on SQLite they start with BEGIN IMMEDIATE so that
concurrent writers queue on the busy timeout instead of failing when they upgrade a lock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000

# postgresql.insert or sqlite.insert: both offer on_conflict_do_update() and .excluded, which
# the generic Insert type does not declare.
DialectInsert = Callable[..., Any]


def normalize_database_url(url: str) -> URL:
    """Accepts URLs as users write them and picks the async driver.

    `postgresql://user@host:5432/db` -> asyncpg, `sqlite:///path/file.db` -> aiosqlite.
    """
    try:
        parsed = make_url(url)
    except Exception as error:  # sqlalchemy raises ArgumentError with its own wording
        raise ValueError(f"not a database URL: {url!r} ({error})") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            # Each pooled connection would see its own empty in-memory database.
            raise ValueError("an SQLite database must be a file: sqlite:///path/to/file.db")
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database {backend!r}: use postgresql:// or sqlite:///")


def utc_now() -> datetime:
    """Now, truncated to milliseconds: what both databases store and the API shows."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        statement_cache_size: int = 100,
        echo: bool = False,
    ) -> None:
        self.url = normalize_database_url(url)
        self.dialect = self.url.get_backend_name()
        serializer = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
        if self.dialect == "postgresql":
            self.engine: AsyncEngine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=False,
                json_serializer=serializer,
                echo=echo,
                # asyncpg's statement cache breaks behind PgBouncer (transaction mode): 0 disables.
                connect_args={"statement_cache_size": statement_cache_size},
            )
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._writer = self.engine
        else:
            self.engine = create_async_engine(
                self.url, json_serializer=serializer, echo=echo, pool_size=pool_size
            )
            _configure_sqlite(self.engine)
            self._reader = self.engine.execution_options(sqlite_begin="DEFERRED")
            self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self.insert: DialectInsert = (
            postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as connection:
            yield connection

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._writer.begin() as connection:
            yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below); the driver must not open transactions on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def describe(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return normalize_database_url(url).render_as_string(hide_password=True)
