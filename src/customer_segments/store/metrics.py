"""Database metrics: each pool's size, connections in use and callers waiting, and the
duration of statements by their first keyword (imported only when metrics are on)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from customer_segments.metrics.definitions import Instruments
from customer_segments.metrics.direct import DirectHistogram

# Statements are named by their first keyword; any other is OTHER, so that no statement text
# ever becomes a label value.
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "SET", "PRAGMA", "OTHER")
_STARTED = "customer_segments_started"


def metered_pool(instruments: Instruments, pool: str) -> type[AsyncAdaptedQueuePool]:
    """The engine's pool class, counting the calls that wait for a connection because all are
    handed out (SQLAlchemy has no event before a checkout)."""
    waiting = instruments.pool_waiting.labels(pool)

    class MeteredPool(AsyncAdaptedQueuePool):
        # SQLAlchemy names a pool's logger after its class's module: this keeps it among
        # sqlalchemy's loggers (quiet by default) rather than ours.
        __module__ = AsyncAdaptedQueuePool.__module__

        def _do_get(self) -> ConnectionPoolEntry:
            if self._pool.qsize() or self._overflow < self._max_overflow:
                return super()._do_get()
            waiting.inc()
            try:
                return super()._do_get()
            finally:
                waiting.dec()

    return MeteredPool


class EngineMetrics:
    """Meters one engine (made with metered_pool's class); `disposed` takes its pool out of
    the sizes."""

    def __init__(self, instruments: Instruments, engine: AsyncEngine, pool: str, size: int) -> None:
        self._size = instruments.pool_size.labels(pool)
        self._size.inc(size)
        self._pool_size = size
        self._in_use = instruments.pool_in_use.labels(pool)
        # Observed per statement: written directly (metrics/direct.py).
        durations = {
            name: DirectHistogram(instruments.query_duration.labels(name)) for name in OPERATIONS
        }
        self.durations = durations
        self.select_duration = durations["SELECT"]
        by_statement: dict[str, DirectHistogram] = {}
        sync_engine = engine.sync_engine
        queue_pool = sync_engine.pool
        assert isinstance(queue_pool, AsyncAdaptedQueuePool)
        self._queue_pool = queue_pool

        @event.listens_for(sync_engine, "before_cursor_execute")
        def before(*arguments: Any) -> None:
            context = arguments[4]
            setattr(context, _STARTED, time.perf_counter())

        @event.listens_for(sync_engine, "after_cursor_execute")
        def after(_connection: Any, _cursor: Any, statement: str, *arguments: Any) -> None:
            duration = by_statement.get(statement)
            if duration is None:
                keyword = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
                duration = durations.get(keyword, durations["OTHER"])
                if len(by_statement) < 10_000:  # statements are few; literals could be many
                    by_statement[statement] = duration
            duration.observe(time.perf_counter() - getattr(arguments[1], _STARTED))

    def sample(self) -> None:
        """Connections in use, from the pool's own count. A gauge is a sample: taken once a
        second (services/readiness.py) rather than set at each checkout and checkin, which
        cost every call two event dispatches and two writes of the metric files."""
        self._in_use.set(self._queue_pool.checkedout())

    def disposed(self) -> None:
        self._size.dec(self._pool_size)
