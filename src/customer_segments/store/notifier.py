""" "A tenant may have new events": one notifier per process tells every watcher and publisher
of that process, so that they re-read the outbox (the outbox is the truth; a wake-up only says
"look", and a spurious one costs a read).

- PostgreSQL: the writing transaction sends pg_notify(CHANNEL, tenant) (store/events.py), which
  PostgreSQL delivers when it commits. One LISTEN per process, on a connection of its own
  (raw asyncpg, not from a pool and not through PgBouncer, which cannot keep a session's
  LISTEN), fans out in-process. After the connection is lost and made again, everyone is
  woken: notifications sent meanwhile are gone.
- SQLite (possibly several worker processes on one file): a poll of the subscribed tenants'
  newest sequence (event_sequences, one row per tenant) every POLL_INTERVAL_S.

Usage, by a watcher of one tenant or a publisher of all (tenant None):

    with notifier.subscribe(tenant) as subscription:
        while not notifier.closed:
            subscription.clear()
            ... read the outbox after the last sequence handled ...
            await subscription.wait(timeout)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from customer_segments.store.events import CHANNEL
from customer_segments.store.store import Store

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
RECONNECT_DELAY_S = 1.0


class Subscription:
    """Set when the tenant (or, for tenant None, any tenant) may have new events."""

    def __init__(self, tenant: str | None) -> None:
        self.tenant = tenant
        self._woken = asyncio.Event()

    def wake(self) -> None:
        self._woken.set()

    def clear(self) -> None:
        """Before reading the outbox: a wake-up from then on is not lost."""
        self._woken.clear()

    async def wait(self, within: float) -> bool:
        """Until woken (True) or `within` seconds passed (False)."""
        try:
            async with asyncio.timeout(within):
                await self._woken.wait()
        except TimeoutError:
            return False
        return True


class EventNotifier:
    def __init__(
        self, store: Store, poll_interval: float = POLL_INTERVAL_S, listen_url: str | None = None
    ) -> None:
        self._store = store
        # --database-listen-url: past PgBouncer, whose transaction mode cannot keep a LISTEN.
        self._listen_url = listen_url
        self._poll_interval = poll_interval
        self._by_tenant: defaultdict[str | None, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        # PostgreSQL: whether the LISTEN is in place now.
        self.listening = False

    async def start(self) -> None:
        if self._store.database.dialect == "postgresql":
            connected = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._listen(connected))
            # The first LISTEN is in place before the server serves (a failure is retried).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(connected), 5.0)
        else:
            self._task = asyncio.create_task(self._poll())

    @contextlib.contextmanager
    def subscribe(self, tenant: str | None) -> Iterator[Subscription]:
        """Wake-ups for `tenant`'s new events (None: every tenant's), while in the block."""
        subscription = Subscription(tenant)
        self._by_tenant[tenant].add(subscription)
        if self.closed:
            subscription.wake()
        try:
            yield subscription
        finally:
            subscribers = self._by_tenant[tenant]
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_tenant[tenant]

    async def wait(self, tenant: str | None, within: float) -> bool:
        """Until `tenant` (None: any tenant) may have new events from now on (True), or
        `within` seconds (False). For a one-off wait; a loop should hold a subscription, so
        that what commits between two waits is not missed."""
        with self.subscribe(tenant) as subscription:
            return await subscription.wait(within)

    def wake(self, tenant: str) -> None:
        for subscription in (*self._by_tenant.get(tenant, ()), *self._by_tenant.get(None, ())):
            subscription.wake()

    def wake_all(self) -> None:
        for subscribers in self._by_tenant.values():
            for subscription in subscribers:
                subscription.wake()

    def close(self) -> None:
        """The server stops: every loop sees `closed` once woken."""
        self.closed = True
        self.wake_all()

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self, connected: asyncio.Future[None]) -> None:
        given = make_url(self._listen_url) if self._listen_url else self._store.database.url
        url = given.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)

        def notified(_connection: Any, _pid: int, _channel: str, tenant: str) -> None:
            self.wake(tenant)

        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(dsn, timeout=10)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, notified)
                self.listening = True
                if not connected.done():
                    connected.set_result(None)
                self.wake_all()  # what was sent while no one listened
                while not lost.is_set() and not connection.is_closed():
                    # A cut that the server did not close shows only when the socket is used.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 10.0)
                    if not lost.is_set():
                        await connection.execute("SELECT 1", timeout=5)
                log.warning("the event listener's connection was lost; connecting again")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("the event listener cannot listen (%s); retrying", error)
            finally:
                self.listening = False
                if connection is not None and not connection.is_closed():
                    connection.terminate()
            self.wake_all()
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _poll(self) -> None:
        seen: dict[str, int] = {}
        while True:
            await asyncio.sleep(self._poll_interval)
            if not self._by_tenant:
                seen.clear()
                continue
            try:
                async with self._store.read() as connection:
                    if None in self._by_tenant:
                        tenants = await self._store.events.tenants(connection)
                    else:
                        tenants = [t for t in self._by_tenant if t is not None]
                    newest = await self._store.events.last_sequences(connection, tenants)
            except Exception as error:  # the database is away; the next poll tries again
                log.debug("polling for new events failed: %s", error)
                continue
            for tenant, last in newest.items():
                # A tenant seen for the first time wakes too: it may have changed before.
                if seen.get(tenant) != last:
                    seen[tenant] = last
                    self.wake(tenant)
