"""Engine set-up and transactions: one code path for PostgreSQL (asyncpg) and SQLite.

Three kinds of work, three pools, so that none takes what another needs:
- writes, one transaction each; on SQLite they start with BEGIN IMMEDIATE so that concurrent
  writers queue on the busy timeout instead of failing when they upgrade a lock;
- plain reads (on PostgreSQL in autocommit mode: a single SELECT needs no BEGIN/ROLLBACK);
- expensive reads, those a caller can make slow (a regular expression over a whole segment):
  a few connections of their own, so that they queue among themselves, and a deadline after
  which the statement is cancelled (PostgreSQL's statement timeout; on SQLite a progress
  handler that interrupts it).
A database that cannot be reached, or whose pool stays exhausted, is `Unavailable`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import asyncpg
import re2
from sqlalchemy import ClauseElement, Select, event
from sqlalchemy import exc as sqlalchemy_errors
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util.concurrency import await_, greenlet_spawn, in_greenlet

from customer_segments import metrics
from customer_segments.domain.errors import Reason, Unavailable

if TYPE_CHECKING:
    from customer_segments.store.metrics import EngineMetrics

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Connections for expensive reads on PostgreSQL, where they run in the database's processes.
EXPENSIVE_READ_POOL_SIZE = 2
# How long a call waits for a pooled connection before it is told to retry (Unavailable).
POOL_TIMEOUT_S = 30.0
# A PostgreSQL that does not answer a connection attempt is unavailable after this long
# (asyncpg's default is 60 s).
CONNECT_TIMEOUT_S = 10.0
# The readiness check's budget: connecting, and its statement, each.
CHECK_TIMEOUT_S = 1.0
# SQLite calls the progress handler of an expensive read every this many VM instructions;
# the read pauses for _SLICE_S after running that long (see _Limits).
_PROGRESS_STEPS = 1000
_SLICE_S = 0.01

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


# How every JSON column is written: compact, unicode as is. One encoder for the process
# rather than json.dumps, which builds one per call when given options (3 µs of a 10 µs
# event payload in the outbox's reads).
dump_document = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
        read_pool_size: int = 10,
        expensive_read_pool_size: int | None = None,
        statement_cache_size: int = 100,
        sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
        pool_timeout_s: float = POOL_TIMEOUT_S,
        echo: bool = False,
    ) -> None:
        self.url = normalize_database_url(url)
        self.dialect = self.url.get_backend_name()
        # SQLite's expensive reads run on the service's own CPU (see _Limits): one at a time.
        self.expensive_read_pool_size = expensive_read_pool_size or (
            EXPENSIVE_READ_POOL_SIZE if self.dialect == "postgresql" else 1
        )
        expensive_read_pool_size = self.expensive_read_pool_size
        options: dict[str, Any] = {
            "max_overflow": 0,
            "pool_timeout": pool_timeout_s,
            "json_serializer": dump_document,
            "json_deserializer": load_document,
            "echo": echo,
        }
        # Metered pools when metrics are on (store/metrics.py, which loads prometheus_client,
        # is imported only then).
        instruments = metrics.instruments()
        self._metered: list[EngineMetrics] = []

        def metered(engine: AsyncEngine, pool: str, size: int) -> AsyncEngine:
            if instruments is not None:
                from customer_segments.store.metrics import EngineMetrics

                self._metered.append(EngineMetrics(instruments, engine, pool, size))
            return engine

        def pool_class(pool: str) -> dict[str, Any]:
            if instruments is None:
                return {}
            from customer_segments.store.metrics import metered_pool

            return {"poolclass": metered_pool(instruments, pool)}

        if self.dialect == "postgresql":
            # Prepared statements break behind PgBouncer in transaction mode: 0 turns off both
            # asyncpg's cache and SQLAlchemy's.
            engine_url = self.url.update_query_dict(
                {"prepared_statement_cache_size": str(statement_cache_size)}
            )
            options["connect_args"] = {
                "statement_cache_size": statement_cache_size,
                "timeout": CONNECT_TIMEOUT_S,
            }

            def engine(pool: str, size: int, **extra: Any) -> AsyncEngine:
                created = create_async_engine(
                    engine_url, pool_size=size, **options, **pool_class(pool), **extra
                )
                _replace_closed_connections(created)
                return metered(created, pool, size)

            self.engine: AsyncEngine = engine("write", pool_size)
            self._writer = self.engine
            # A write that is one statement shares the write pool, in autocommit mode.
            self._single_statement: AsyncEngine | None = self.engine.execution_options(
                isolation_level="AUTOCOMMIT"
            )
            self._reader = engine(
                "read", read_pool_size, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
            )
            # Transactions, for SET LOCAL statement_timeout.
            self._expensive_reader = engine("expensive_read", expensive_read_pool_size)
            # The readiness check's connection, of its own: with a small pool, it must not take
            # the one a call waits for, nor queue behind the calls when they hold them all.
            self._checker = create_async_engine(
                engine_url,
                pool_size=1,
                max_overflow=0,
                pool_timeout=CHECK_TIMEOUT_S,
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,
                connect_args={
                    "statement_cache_size": statement_cache_size,
                    "timeout": CHECK_TIMEOUT_S,
                    "command_timeout": CHECK_TIMEOUT_S,
                },
            )
            _replace_closed_connections(self._checker)
            self._check_statement = "SELECT 1"
            self._engines = [self.engine, self._reader, self._expensive_reader, self._checker]
        else:

            def sqlite_engine(pool: str, size: int, *, limited: bool = False) -> AsyncEngine:
                created = create_async_engine(
                    self.url, pool_size=size, **options, **pool_class(pool)
                )
                _configure_sqlite(created, sqlite_busy_timeout_ms, limited=limited)
                return metered(created, pool, size)

            self.engine = sqlite_engine("write", pool_size)
            self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            self._single_statement = None
            reader = sqlite_engine("read", read_pool_size)
            self._reader = reader.execution_options(sqlite_begin="DEFERRED")
            expensive_reader = sqlite_engine(
                "expensive_read", expensive_read_pool_size, limited=True
            )
            self._expensive_reader = expensive_reader.execution_options(sqlite_begin="DEFERRED")
            # Not metered, as on PostgreSQL: its statement each second is no caller's.
            self._checker = create_async_engine(self.url, pool_size=1, **options)
            _configure_sqlite(self._checker, sqlite_busy_timeout_ms, limited=False)
            # Reads the file's header: the file is there and readable, not only the driver.
            self._check_statement = "PRAGMA schema_version"
            self._engines = [self.engine, reader, expensive_reader, self._checker]
        self.insert: DialectInsert = (
            postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        )

    @property
    def engines(self) -> list[AsyncEngine]:
        """The engine of each pool (the execution_options() variants share their events)."""
        return list(self._engines)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads whose cost the service bounds (by key, by index)."""
        # try/except rather than a context manager of its own: this is the hot path.
        try:
            async with self._reader.connect() as connection:
                yield connection
        except _CAUGHT as error:
            _raise_if_outage(error)
            raise

    @asynccontextmanager
    async def expensive_read(self, timeout_ms: int) -> AsyncIterator[AsyncConnection]:
        """A connection for a read a caller can make slow, from the few kept for them (callers
        queue for one); a statement still running `timeout_ms` after the connection was handed
        out is cancelled (StatementTimedOut)."""
        try:
            if self.dialect == "postgresql":
                async with self._expensive_reader.begin() as connection:
                    # SET LOCAL ends with the transaction: the connection returns unchanged.
                    await connection.exec_driver_sql(
                        f"SET LOCAL statement_timeout = {int(timeout_ms)}"
                    )
                    try:
                        yield connection
                    except DBAPIError as error:
                        if _sqlstate(error) == "57014":  # query_canceled
                            raise StatementTimedOut(timeout_ms) from None
                        raise
                return
            async with self._expensive_reader.connect() as connection:
                limits: _Limits = (await connection.get_raw_connection()).info["limits"]
                limits.start(timeout_ms / 1000)
                try:
                    yield connection
                except DBAPIError as error:
                    if _sqlite_error(error) == "SQLITE_INTERRUPT":
                        raise StatementTimedOut(timeout_ms) from None
                    raise
                finally:
                    limits.stop()
        except _CAUGHT as error:
            _raise_if_outage(error)
            raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            async with self._writer.begin() as connection:
                yield connection
        except _CAUGHT as error:
            _raise_if_outage(error)
            raise

    def fast_read(self, statement: Select[Any]) -> FastRead:
        if self.dialect != "postgresql":
            return FastRead(statement, None, read=self.read)
        # Run past SQLAlchemy's execution, so past its events: timed by itself.
        duration = self._metered[0].select_duration if self._metered else None
        return FastRead(
            statement, DriverStatement(statement, self._reader, duration), read=self.read
        )

    def driver_write(self, statement: ClauseElement, operation: str) -> DriverStatement | None:
        """On PostgreSQL, `statement` (one statement, atomic by itself: see single_statement)
        to run on a connection of the write pool without SQLAlchemy's execution around it (see
        DriverStatement), timed as `operation` (store/metrics.py OPERATIONS); None elsewhere."""
        if self._single_statement is None:
            return None
        duration = self._metered[0].durations[operation] if self._metered else None
        return DriverStatement(statement, self.engine, duration, as_sqlalchemy_errors=True)

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[AsyncConnection]:
        """For a write that is one statement: atomic by itself, so PostgreSQL runs it in
        autocommit mode without BEGIN/COMMIT round trips. SQLite takes its write lock as usual."""
        if self._single_statement is None:
            async with self.write() as connection:
                yield connection
        else:
            try:
                async with self._single_statement.connect() as connection:
                    yield connection
            except _CAUGHT as error:
                _raise_if_outage(error)
                raise

    async def check(self) -> str | None:
        """None if the database answers a trivial statement within CHECK_TIMEOUT_S (or two, when
        it must connect first); otherwise why not, in a few words."""
        try:
            async with asyncio.timeout(2 * CHECK_TIMEOUT_S):
                async with self._checker.connect() as connection:
                    await connection.exec_driver_sql(self._check_statement)
        except TimeoutError:
            return f"no answer within {2 * CHECK_TIMEOUT_S:g}s"
        except Exception as error:  # whatever it is, the database did not answer
            return _short(error)
        return None

    def sample_pool_usage(self) -> None:
        """Records the connections each pool has handed out (when metrics are on)."""
        for engine_metrics in self._metered:
            engine_metrics.sample()

    async def dispose(self) -> None:
        for engine in self._engines:
            await engine.dispose()
        for engine_metrics in self._metered:
            engine_metrics.disposed()
        self._metered.clear()


class StatementTimedOut(Exception):
    def __init__(self, timeout_ms: int) -> None:
        super().__init__(f"statement took longer than {timeout_ms} ms")
        self.timeout_ms = timeout_ms


def _short(error: BaseException) -> str:
    """The driver's message, without SQLAlchemy's statement and link lines."""
    found = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    if isinstance(found, OSError) and found.errno:
        return os.strerror(found.errno)  # "Connection refused", not asyncpg's "Connect call failed"
    return (str(found).strip().splitlines() or [type(found).__name__])[0]


def _sqlstate(error: DBAPIError) -> str | None:
    original = error.orig
    for candidate in (original, getattr(original, "__cause__", None)):
        sqlstate = getattr(candidate, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate
    return None


class FastRead:
    """A read for the hottest paths ("is this customer in segment S?", "which segments is this
    customer in?").

    On PostgreSQL the statement runs on the pooled asyncpg connection itself (DriverStatement):
    SQLAlchemy's execution layer costs more CPU per call than the query (measured: ~135 us of
    ~370 us per GetAssignment). Only for statements whose parameters need no type processing
    (plain strings and numbers); jsonb results arrive decoded either way, through the codec
    SQLAlchemy installs on each connection. On SQLite it is a plain SQLAlchemy execution.

    `one_alone` and `all_alone` run the statement on a read connection of its own, for a use
    case that needs nothing else of it (DriverStatement.alone).
    """

    def __init__(
        self,
        statement: Select[Any],
        on_driver: DriverStatement | None,
        *,
        read: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
    ) -> None:
        self._statement = statement
        self._read = read
        self._driver = on_driver

    async def one(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        if self._driver is None:
            row = (await connection.execute(self._statement, dict(parameters))).first()
            return None if row is None else dict(row._mapping)
        record: Mapping[str, Any] | None = await self._driver.on(connection, "fetchrow", parameters)
        return record

    async def all(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        if self._driver is None:
            result = await connection.execute(self._statement, dict(parameters))
            return [row._mapping for row in result]
        records: list[Mapping[str, Any]] = await self._driver.on(connection, "fetch", parameters)
        return records

    async def one_alone(self, parameters: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """`one` on a read connection of its own."""
        if self._driver is None:
            async with self._read() as connection:
                return await self.one(connection, parameters)
        record: Mapping[str, Any] | None = await self._driver.alone("fetchrow", parameters)
        return record

    async def all_alone(self, parameters: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """`all` on a read connection of its own."""
        if self._driver is None:
            async with self._read() as connection:
                return await self.all(connection, parameters)
        records: list[Mapping[str, Any]] = await self._driver.alone("fetch", parameters)
        return records


class DriverStatement:
    """A statement compiled by SQLAlchemy once (PostgreSQL) and run on a pooled asyncpg
    connection itself, timed: for statements whose parameters need no type processing.

    `alone` runs it on a connection of its own, taken from the engine's pool without an
    SQLAlchemy Connection around it (see _Checkout): same pool, limits, timeout, metrics and
    replacement of closed connections as `engine.connect()`. The connection is outside any
    transaction, so a statement there commits by itself (autocommit). With
    `as_sqlalchemy_errors`, a database error that is no outage comes out of `alone` as
    SQLAlchemy's DBAPIError, as it would from SQLAlchemy's execution (for callers that decide
    on SQLAlchemyError); otherwise as asyncpg's.
    """

    def __init__(
        self,
        statement: ClauseElement,
        engine: AsyncEngine,
        duration: Any = None,
        *,
        as_sqlalchemy_errors: bool = False,
    ) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)  # a statement, not DDL
        self._sql = str(compiled)
        self._parameter_order = tuple(compiled.positiontup or ())
        self._checkout = _Checkout(engine.sync_engine)
        self._duration = duration  # a histogram child, when metrics are on
        self._as_sqlalchemy_errors = as_sqlalchemy_errors

    async def on(
        self, connection: AsyncConnection, method: str, parameters: Mapping[str, Any]
    ) -> Any:
        """asyncpg's `method` (fetchrow, fetch) on the driver connection of `connection`."""
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            return await self._run(driver, method, parameters)
        except _LOST:
            # SQLAlchemy did not see this error, so tell its pool not to reuse the connection.
            await connection.invalidate()
            raise

    async def alone(self, method: str, parameters: Mapping[str, Any]) -> Any:
        """asyncpg's `method` (fetchrow, fetch) on a connection of its own."""
        try:
            pooled = self._checkout.without_waiting()
            if pooled is None:
                pooled = await greenlet_spawn(self._checkout)
            try:
                found = await self._run(pooled.driver_connection, method, parameters)
            except _LOST as lost:
                # As Connection.invalidate(): the pool connects anew for the next caller.
                await greenlet_spawn(pooled.invalidate, lost)
                raise
            except BaseException:
                pooled.close()
                raise
            # Back to the pool's queue: no I/O (no transaction to roll back, max_overflow=0:
            # the queue has room for every connection), so no greenlet needed, as for the
            # checkout.
            pooled.close()
            return found
        except _CAUGHT as error:
            _raise_if_outage(error)
            if self._as_sqlalchemy_errors and isinstance(error, asyncpg.PostgresError):
                raise DBAPIError.instance(
                    self._sql, None, error, asyncpg.PostgresError, hide_parameters=True
                ) from error
            raise

    async def _run(self, driver: Any, method: str, parameters: Mapping[str, Any]) -> Any:
        started = time.perf_counter()
        found = await getattr(driver, method)(
            self._sql, *(parameters[name] for name in self._parameter_order)
        )
        if self._duration is not None:
            self._duration.observe(time.perf_counter() - started)
        return found


# What asyncpg raises on a connection that was lost in use.
_LOST = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


class _Checkout:
    """A connection of an engine's pool as `engine.connect()` gets it, without the Connection
    object and its two greenlet switches (measured on a loaded 2-core machine, one connection
    out and back: 34 instead of 150 us of CPU). Run it in greenlet_spawn: the pool may have to
    connect, or wait for a connection, and both await; or try `without_waiting` first."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: Any = engine.pool._pool  # type: ignore[attr-defined]

    def without_waiting(self) -> PoolProxiedConnection | None:
        """The checkout outside a greenlet when the pool's next idle connection needs no I/O
        (the common case under load); None otherwise, and then greenlet_spawn(self) does it.
        Served, this took GetAssignment from 671 to 595 us of server CPU per call and the
        segments of a customer from 770 to 680 (bench/ab_reads.py, 5 rounds); in a warm loop
        the greenlet costs about 11 us of a checkout's 16.

        SQLAlchemy 2.1's queue hands out an idle connection without awaiting. `_needs_io`
        looks ahead so that the pool is not asked when it would reconnect: it would raise
        MissingGreenlet before any I/O, with the connection back in the queue (so this would
        still be right), but only after warning that its connect coroutine was never awaited.
        tests/integration/test_checkout_without_waiting.py pins both ways."""
        idle = self._queue._queue._queue  # the asyncio queue's deque
        if not idle:
            return None
        if self._needs_io(idle[-1] if self._queue.use_lifo else idle[0]):
            return None
        try:
            return self()
        except sqlalchemy_errors.MissingGreenlet:
            return None

    def _needs_io(self, record: Any) -> bool:
        """Whether handing out this connection record means connecting: _ConnectionRecord's
        get_connection's reasons, and _replace_closed_connections's."""
        connection = record.dbapi_connection
        if connection is None or connection.driver_connection.is_closed():
            return True
        pool: Any = self._engine.pool
        started = record.starttime
        return bool(
            pool._invalidate_time > started
            or record._soft_invalidate_time > started
            or (pool._recycle > -1 and time.time() - started > pool._recycle)
        )

    def __call__(self) -> PoolProxiedConnection:
        try:
            return self._engine.raw_connection()
        except self._engine.dialect.loaded_dbapi.Error as error:
            # What Connection() does with it: a DBAPIError, marked invalidated if the dialect
            # calls it a disconnect (so _raise_if_outage tells an outage).
            Connection._handle_dbapi_exception_noconnection(
                error, self._engine.dialect, self._engine
            )
            raise


# What a database that is away or overwhelmed raises, among other things (see _is_outage).
_CAUGHT = (
    sqlalchemy_errors.TimeoutError,
    DBAPIError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresError,
)


def _raise_if_outage(error: Exception) -> None:
    """`Unavailable` for an error that says the database is away or overwhelmed: the caller
    should retry, which a client does for UNAVAILABLE and not for INTERNAL."""
    if isinstance(error, sqlalchemy_errors.TimeoutError):  # the pool's, not a statement's
        log.warning("no database connection became free within the pool timeout")
        raise Unavailable("The database is busy; retry later.", Reason.DATABASE_BUSY) from None
    if _is_outage(error):
        log.warning("database unavailable: %s", error)
        raise Unavailable() from None


# SQLSTATE classes and codes of a server that is away, restarting or out of resources.
_OUTAGE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")
# SQLite: the file is locked beyond the busy timeout, unreadable or unwritable.
_OUTAGE_SQLITE_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_READONLY",
    "SQLITE_FULL",
)


def _is_outage(error: Exception) -> bool:
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = _sqlstate(error)
        if sqlstate is not None:
            return sqlstate.startswith(_OUTAGE_SQLSTATES)
        name = _sqlite_error(error)
        if name is not None:
            return name.startswith(_OUTAGE_SQLITE_ERRORS)
        # The driver's own error, which SQLAlchemy's adapter may wrap once more.
        original = error.orig
        return any(
            isinstance(candidate, Exception) and _is_outage(candidate)
            for candidate in (original, getattr(original, "__cause__", None))
        )
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate or "").startswith(_OUTAGE_SQLSTATES)
    # A refused or lost connection (OSError, asyncpg's "connection is closed").
    return isinstance(error, OSError | asyncpg.InterfaceError)


def _sqlite_error(error: DBAPIError) -> str | None:
    """SQLite's name of the error (SQLITE_BUSY, SQLITE_INTERRUPT...), if it is SQLite's."""
    original = error.orig
    for candidate in (original, getattr(original, "__cause__", None)):
        if isinstance(candidate, sqlite3.Error):
            return getattr(candidate, "sqlite_errorname", None)
    return None


def _replace_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection the server has closed (a restart, an idle timeout, a proxy that cut
    it) is replaced at checkout, before a call uses it: asyncpg notices the closed socket as it
    happens, so the check is a flag, not a round trip as pool_pre_ping's would be."""

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            # The pool discards it and connects anew.
            raise sqlalchemy_errors.DisconnectionError("the server closed the connection")


class _Limits:
    """The bounds of the statement an SQLite connection for expensive reads is running.

    SQLite runs in the service's own process: a scan takes CPU the service needs for every
    other call (measured: one scan beside the writes halved them on a busy 2-core machine).
    So a statement also pauses for as long as it has run, every _SLICE_S: at most half a core
    per expensive-read connection, whatever the caller asked for.
    """

    deadline: float | None = None  # None: the connection is idle
    slice_started = 0.0

    def start(self, timeout_s: float) -> None:
        self.slice_started = time.monotonic()
        self.deadline = self.slice_started + timeout_s

    def stop(self) -> None:
        self.deadline = None

    def progress(self) -> int:
        """SQLite's progress handler, run in the connection's thread: non-zero interrupts the
        statement."""
        deadline = self.deadline
        if deadline is None:
            return 0
        now = time.monotonic()
        if now > deadline:
            return 1
        if now - self.slice_started > _SLICE_S:
            time.sleep(_SLICE_S)  # releases the GIL too
            self.slice_started = time.monotonic()
        return 0


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int, *, limited: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        # We emit BEGIN ourselves (below); the driver must not open transactions on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        dbapi_connection.create_function("re2_search", 2, re2_search, deterministic=True)
        if limited:
            record.info["limits"] = limits = _Limits()
            await_(
                dbapi_connection.driver_connection.set_progress_handler(
                    limits.progress, _PROGRESS_STEPS
                )
            )

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine.sync_engine.pool, "invalidate")
    def on_invalidate(dbapi_connection: Any, record: Any, error: BaseException | None) -> None:
        _end_transaction_before_close(dbapi_connection)


def _end_transaction_before_close(dbapi_connection: Any) -> None:
    """Rolls back what an invalidated SQLite connection holds before SQLAlchemy closes it.

    A call cancelled inside a statement (a deadline, a stopping task) makes SQLAlchemy
    invalidate the connection without closing the statement's cursor first; sqlite3 then
    cannot really close the connection (it turns into a "zombie" until that cursor is freed)
    and the zombie keeps the transaction and its write lock: every later write waited out
    the busy timeout and failed with "database is locked", for as long as anything kept the
    cancelled call's traceback. ROLLBACK is allowed with statements pending (they are
    aborted) and releases the lock at once."""
    if dbapi_connection is None or not in_greenlet():
        return  # garbage collection: the connection is closed without a loop to ask
    try:
        # Shielded: a second cancellation must not skip the rollback; aiosqlite runs it in
        # order, before the close that follows.
        await_(asyncio.shield(dbapi_connection.driver_connection.rollback()))
    except BaseException as error:
        # Not raised, even a cancellation: the close must still follow (the call is already
        # failing with what made SQLAlchemy invalidate the connection).
        log.debug("rollback of an invalidated SQLite connection failed: %r", error)


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
