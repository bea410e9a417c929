"""Engine set-up and transactions: one code path for PostgreSQL (asyncpg) and SQLite.

Reads on PostgreSQL run on an engine of their own in autocommit mode: a single SELECT needs
no BEGIN/ROLLBACK round trips, and reads never queue behind writes for a connection. Writes
run in one transaction each; on SQLite they start with BEGIN IMMEDIATE so that concurrent
writers queue on the busy timeout instead of failing when they upgrade a lock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any

import asyncpg
import re2
from sqlalchemy import Select, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
log = logging.getLogger(__name__)

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


def load_document(text: str) -> Any:
    """A stored JSON column. One nested hundreds of levels deep (written before the writes
    refused more than validation.MAX_JSON_DEPTH) is more than Python's recursive json can
    read: it reads as {} rather than failing every page the row is on."""
    try:
        return json.loads(text)
    except RecursionError:
        log.warning("a stored JSON document is nested too deeply to read; it reads as {}")
        return {}


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
        self._autocommit_engine: AsyncEngine | None = None
        serializer = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
        if self.dialect == "postgresql":
            # Prepared statements break behind PgBouncer in transaction mode: 0 turns off both
            # asyncpg's cache and SQLAlchemy's.
            engine_url = self.url.update_query_dict(
                {"prepared_statement_cache_size": str(statement_cache_size)}
            )
            options: dict[str, Any] = {
                "pool_size": pool_size,
                "max_overflow": 0,
                "json_serializer": serializer,
                "json_deserializer": load_document,
                "echo": echo,
                "connect_args": {"statement_cache_size": statement_cache_size},
            }
            self.engine: AsyncEngine = create_async_engine(engine_url, **options)
            self._autocommit_engine = create_async_engine(
                engine_url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, **options
            )
            self._reader: AsyncEngine = self._autocommit_engine
            self._writer = self.engine
        else:
            self.engine = create_async_engine(
                self.url,
                json_serializer=serializer,
                json_deserializer=load_document,
                echo=echo,
                pool_size=pool_size,
            )
            _configure_sqlite(self.engine)
            self._reader = self.engine.execution_options(sqlite_begin="DEFERRED")
            self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self.insert: DialectInsert = (
            postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        )

    @asynccontextmanager
    async def read(
        self, *, statement_timeout_ms: int | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. With a timeout, PostgreSQL cancels any statement that runs
        longer (StatementTimedOut); SQLite has no such limit and needs none for the reads that
        ask for one (RE2 matches in linear time)."""
        if statement_timeout_ms is None or self.dialect != "postgresql":
            async with self._reader.connect() as connection:
                yield connection
            return
        # SET LOCAL ends with the transaction, so the pooled connection comes back unchanged.
        async with self.engine.begin() as connection:
            await connection.exec_driver_sql(
                f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
            )
            try:
                yield connection
            except DBAPIError as error:
                if _sqlstate(error) == "57014":  # query_canceled
                    raise StatementTimedOut(statement_timeout_ms) from None
                raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._writer.begin() as connection:
            yield connection

    def fast_read(self, statement: Select[Any]) -> FastRead:
        return FastRead(statement, self.engine if self.dialect == "postgresql" else None)

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[AsyncConnection]:
        """For a write that is one statement: atomic by itself, so PostgreSQL runs it in
        autocommit mode without BEGIN/COMMIT round trips. SQLite takes its write lock as usual."""
        if self._autocommit_engine is None:
            async with self.write() as connection:
                yield connection
        else:
            async with self._autocommit_engine.connect() as connection:
                yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._autocommit_engine is not None:
            await self._autocommit_engine.dispose()


class StatementTimedOut(Exception):
    def __init__(self, timeout_ms: int) -> None:
        super().__init__(f"statement took longer than {timeout_ms} ms")
        self.timeout_ms = timeout_ms


def _sqlstate(error: DBAPIError) -> str | None:
    original = error.orig
    for candidate in (original, getattr(original, "__cause__", None)):
        sqlstate = getattr(candidate, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate
    return None


class FastRead:
    """A read for the hottest path ("is this customer in segment S?").

    On PostgreSQL the statement is compiled by SQLAlchemy once and run on the pooled asyncpg
    connection itself: SQLAlchemy's execution layer costs more CPU per call than the query
    (measured: ~135 us of ~370 us per GetAssignment). Only for statements whose parameters
    need no type processing (plain strings and numbers); jsonb results arrive decoded either
    way, through the codec SQLAlchemy installs on each connection. On SQLite it is a plain
    SQLAlchemy execution.
    """

    def __init__(self, statement: Select[Any], postgresql_engine: AsyncEngine | None) -> None:
        self._statement = statement
        self._driver_sql: str | None = None
        self._parameter_order: tuple[str, ...] = ()
        if postgresql_engine is not None:
            compiled = statement.compile(dialect=postgresql_engine.dialect)
            self._driver_sql = str(compiled)
            self._parameter_order = tuple(compiled.positiontup or ())

    async def one(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        if self._driver_sql is None:
            row = (await connection.execute(self._statement, dict(parameters))).first()
            return None if row is None else dict(row._mapping)
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            record: Mapping[str, Any] | None = await driver.fetchrow(
                self._driver_sql, *(parameters[name] for name in self._parameter_order)
            )
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            # SQLAlchemy did not see this error, so tell its pool not to reuse the connection.
            await connection.invalidate()
            raise
        return record


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
        dbapi_connection.create_function("re2_search", 2, re2_search, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 8 << 20  # bounds the memory of one compiled pattern


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def re2_search(pattern: str | None, value: str | None) -> bool | None:
    """SQLite's side of `regex_search` (query/sql.py): RE2 runs in time linear in the value,
    whatever the pattern."""
    if pattern is None or value is None:
        return None
    return _compiled(pattern).search(value) is not None


def describe(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return normalize_database_url(url).render_as_string(hide_password=True)
