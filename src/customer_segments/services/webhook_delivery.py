"""Webhook delivery: a background task in every serve process.

Each poll, the process claims the active endpoints whose lease is free or has run out (and
renews its own), so that with --workers N or several instances one process at a time serves an
endpoint. For each endpoint it holds, one task reads the tenant's outbox after the endpoint's
cursor and POSTs each event of the endpoint's types, in sequence order: the next event waits
until the current one is settled (delivered, or FAILED after the last retry). The cursor moves
only past settled events, so a process killed mid-delivery leaves the event to be delivered
again, with the same webhook-id, by whoever holds the lease next: at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook as Signer

from customer_segments import metrics
from customer_segments.domain import webhooks
from customer_segments.domain.events import message
from customer_segments.domain.webhooks import Delivery, DeliveryStatus
from customer_segments.store.database import utc_now
from customer_segments.store.events import StoredEvent
from customer_segments.store.store import Store
from customer_segments.store.webhooks import DeliveryKey, HeldEndpoint

log = logging.getLogger(__name__)

# Events read from the outbox at a time, per endpoint.
BATCH = 100
# The cursor of an endpoint delivering a stream of events is written at most this often (and
# after each batch): a crash re-delivers at most what was delivered since (at least once).
SAVE_INTERVAL_S = 0.2
USER_AGENT = "customer-segments-webhooks/1"
RELEASE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class DeliverySettings:
    """See config.Settings (webhook_*)."""

    # The delay before each attempt (the first is usually 0: at once).
    retry_schedule: tuple[float, ...] = webhooks.retry_schedule(webhooks.DEFAULT_RETRY_SCHEDULE)
    timeout_seconds: float = 10.0
    poll_interval_seconds: float = 0.5
    # Polls that commits wake start at least this long after the previous poll started: a
    # bulk import commits a chunk every few milliseconds, and a poll (a transaction of three
    # statements, five round trips: some 2.6 ms of CPU on the benchmark machine) after each
    # one took 9% of the server's CPU, and PostgreSQL's time. At 0.1 s it still took 8%. A
    # commit after a quiet spell is still looked at at once; under a stream of commits an
    # event waits at most this long more before its endpoint's worker is woken.
    wake_gap_seconds: float = 0.25
    lease_seconds: float = 30.0
    # POSTs in flight at once in this process (over all endpoints): a receiver that hangs holds
    # one of them until its timeout, never more.
    max_concurrent: int = 64


class RefusedDestination(OSError):
    """A destination that resolves to an address the service must never call (SSRF)."""


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp would, then refuses the whole name if any address is forbidden:
    the check is on the very addresses the connection uses, at every resolution, so a name
    whose DNS changes after the endpoint was created cannot reach them."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        found = await self._inner.resolve(host, port, family)
        loopback_name = host.lower() in webhooks.LOOPBACK_NAMES
        for entry in found:
            address = ipaddress.ip_address(entry["host"])
            reason = webhooks.forbidden_address(address)
            if reason is None and loopback_name and not address.is_loopback:
                reason = "is not loopback"
            if reason is not None:
                raise RefusedDestination(f"{host} resolves to {address}, which {reason}")
        return found

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class Attempt(NamedTuple):
    outcome: str  # delivered, rejected, gone, timeout, unreachable, refused
    status_code: int | None = None
    error: str | None = None


class EndpointGone(Exception):
    """The endpoint turned inactive (410), or this process no longer holds its lease."""


@functools.lru_cache(maxsize=1024)
def _literal_refusal(url: str) -> str | None:
    """Why a URL whose host is a literal address must not be called (None: it may, or the
    host is a name, whose addresses the resolver checks)."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    reason = webhooks.forbidden_address(address)
    return None if reason is None else f"address {host} {reason}"


def delivery_body(event: StoredEvent) -> str:
    return message(event.type, event.occurred_at, event.payload)


class WebhookDispatcher:
    """The delivering side of one process. `resolver`: how names are resolved (tests give
    one; the guard applies to whatever it answers)."""

    def __init__(
        self,
        store: Store,
        settings: DeliverySettings = DeliverySettings(),  # frozen
        *,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        # Unique per process start: a restarted process waits for its old lease to run out.
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._resolver = GuardedResolver(resolver)
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._workers: dict[tuple[str, str], _EndpointWorker] = {}
        self._task: asyncio.Task[None] | None = None
        self._poll_now = asyncio.Event()
        self._instruments = metrics.instruments()
        self._failing = False

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.settings.max_concurrent, resolver=self._resolver
            ),
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
            trust_env=False,  # no proxy from the environment: the guard sees the real peer
            auto_decompress=False,
        )
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def wake(self) -> None:
        """Polls at once (for a notifier of new events)."""
        self._poll_now.set()

    async def stop(self) -> None:
        """Stops delivering and frees this process's leases, so that another process (or this
        one restarted) goes on at once; an attempt in flight is abandoned and will be made
        again."""
        tasks = [worker.task for worker in self._workers.values() if worker.task is not None]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        try:
            # Bounded: a database that does not answer must not hold up the stop.
            async with asyncio.timeout(RELEASE_TIMEOUT_S), self.store.write() as connection:
                await self.store.webhooks.release(connection, self.owner)
        except Exception as error:  # the leases then run out by themselves
            log.warning("webhook leases not released (%s); they run out by themselves", error)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._poll()
                if self._failing:
                    log.info("webhook delivery polls the database again")
                self._failing = False
            except Exception as error:
                if not self._failing:
                    log.warning("webhook delivery cannot poll the database: %s", error)
                self._failing = True
            settings = self.settings
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), self._interval())
            gap = started + min(settings.wake_gap_seconds, settings.poll_interval_seconds)
            gap -= loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            self._poll_now.clear()

    def _interval(self) -> float:
        """Until the next poll unless a commit wakes it first. A process delivering to no
        endpoint polls only to take over endpoints with nothing new (a dead process's, whose
        lease runs out), since a commit of a new event wakes it anyway: ten times less often
        (a poll is three statements, about 1% of a busy server's CPU at two a second), and
        still well within a lease, so a takeover waits at most a sixth of a lease more."""
        settings = self.settings
        if self._workers:
            return settings.poll_interval_seconds
        return max(
            settings.poll_interval_seconds,
            min(settings.poll_interval_seconds * 10, settings.lease_seconds / 6),
        )

    async def _poll(self) -> None:
        lease = timedelta(seconds=self.settings.lease_seconds)
        now = utc_now()
        # One transaction of the write pool: the read pool stays the calls' (its in-use gauge
        # says what calls hold), and the claim and what it claimed are read together.
        async with self.store.write() as connection:
            await self.store.webhooks.claim(
                connection, self.owner, now, now + lease, now + lease * 2 / 3
            )
            held = await self.store.webhooks.held(connection, self.owner, now)
            retrying = await self.store.webhooks.retrying(connection, self.owner)
        endpoints = {(endpoint.tenant, endpoint.id): endpoint for endpoint in held}
        for key, worker in list(self._workers.items()):
            endpoint = endpoints.get(key)
            if worker.finished or endpoint is None or endpoint.version != worker.endpoint.version:
                # Lost, inactive, deleted or changed: a changed one starts over with its settings.
                if worker.task is not None:
                    worker.task.cancel()
                del self._workers[key]
        for key, endpoint in endpoints.items():
            known = self._workers.get(key)
            if known is None:
                started = self._workers[key] = _EndpointWorker(self, endpoint)
                started.start()
            elif endpoint.head > known.cursor or key in retrying:
                known.wake()

    async def post(
        self, endpoint: HeldEndpoint, signer: Signer, event_id: str, body: str
    ) -> Attempt:
        """One attempt; never raises for what the receiver or the network did."""
        assert self._session is not None, "start() first"
        refused = _literal_refusal(endpoint.destination_url)
        if refused is not None:  # aiohttp does not resolve literal addresses
            return self._counted(Attempt("refused", error=refused))
        async with self._slots:
            moment = datetime.now(UTC)
            headers = {
                **endpoint.headers,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "webhook-id": event_id,
                "webhook-timestamp": str(int(moment.timestamp())),
                "webhook-signature": signer.sign(event_id, moment, body),
            }
            try:
                async with self._session.post(
                    endpoint.destination_url,
                    data=body.encode(),
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    status = response.status
            except TimeoutError:
                return self._counted(
                    Attempt(
                        "timeout", error=f"no answer within {self.settings.timeout_seconds:g} s"
                    )
                )
            except aiohttp.ClientConnectorError as error:
                if isinstance(error.os_error, RefusedDestination):
                    return self._counted(Attempt("refused", error=str(error.os_error)))
                return self._counted(Attempt("unreachable", error=str(error)[:200]))
            except (aiohttp.ClientError, OSError) as error:
                return self._counted(
                    Attempt("unreachable", error=str(error)[:200] or type(error).__name__)
                )
        if 200 <= status < 300:
            return self._counted(Attempt("delivered", status))
        if status == 410:
            return self._counted(Attempt("gone", status, "410 Gone: the endpoint turned inactive"))
        return self._counted(Attempt("rejected", status, f"answered {status}"))

    def _counted(self, attempt: Attempt) -> Attempt:
        if self._instruments is not None:
            self._instruments.webhook_attempts[attempt.outcome].inc()
        return attempt

    def failed(self) -> None:
        if self._instruments is not None:
            self._instruments.webhook_failed.inc()


@dataclass
class _EndpointWorker:
    dispatcher: WebhookDispatcher
    endpoint: HeldEndpoint
    task: asyncio.Task[None] | None = None
    finished: bool = False
    cursor: int = 0
    _saved: int = 0
    _saved_at: float = 0.0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.cursor = self._saved = self.endpoint.last_sequence
        self.signer = Signer(self.endpoint.secret_key)
        self.store = self.dispatcher.store
        self.schedule = self.dispatcher.settings.retry_schedule

    def start(self) -> None:
        self._wake.set()
        self.task = asyncio.create_task(self._run(), name=f"webhook-{self.endpoint.id}")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                try:
                    await self._work()
                except EndpointGone:
                    raise
                except Exception as error:
                    log.warning("webhook %s: delivery paused: %s", self.endpoint.id, error)
                    await asyncio.sleep(self.dispatcher.settings.poll_interval_seconds)
                    self._wake.set()
        except EndpointGone:
            pass
        finally:
            self.finished = True

    @property
    def _types(self) -> tuple[str, ...]:
        return self.endpoint.event_types

    async def _work(self) -> None:
        async with self.store.read() as connection:
            in_progress = await self.store.webhooks.in_progress(
                connection, self.endpoint.tenant, self.endpoint.id
            )
        pending = {d.sequence: d for d in in_progress if d.status is DeliveryStatus.PENDING}
        for delivery in in_progress:
            if delivery.status is DeliveryStatus.RETRYING:
                await self._retry(delivery)
        while True:
            async with self.store.read() as connection:
                batch = await self.store.events.after(
                    connection, self.endpoint.tenant, self.cursor, BATCH
                )
            if not batch:
                break
            for event in batch:
                if not self._types or event.type in self._types:
                    await self._settle(event, pending.pop(event.sequence, None))
                self.cursor = event.sequence
                if time.monotonic() - self._saved_at >= SAVE_INTERVAL_S:
                    await self._save()
            await self._save()

    def _key(self, sequence: int) -> DeliveryKey:
        return DeliveryKey(self.endpoint.tenant, self.endpoint.id, sequence)

    async def _save(self, connection: Any = None) -> None:
        if self.cursor <= self._saved and connection is None:
            return
        if connection is None:
            async with self.store.write() as opened:
                await self._advance(opened)
        else:
            await self._advance(connection)

    async def _advance(self, connection: Any) -> None:
        held = await self.store.webhooks.advance(
            connection, self.endpoint.tenant, self.endpoint.id, self.dispatcher.owner, self.cursor
        )
        if not held:
            raise EndpointGone
        self._saved, self._saved_at = self.cursor, time.monotonic()

    async def _settle(self, event: StoredEvent, pending: Delivery | None) -> None:
        """Attempts on the schedule until delivered or out of attempts; the order waits."""
        body = delivery_body(event)
        attempts = pending.attempts if pending is not None else 0
        due = pending.next_attempt_at if pending is not None else None
        recorded = pending is not None
        while True:
            # (A schedule shortened since the last attempt: its last delay.)
            delay = (
                self.schedule[min(attempts, len(self.schedule) - 1)]
                if due is None
                else (due - datetime.now(UTC)).total_seconds()
            )
            if delay > 0:
                await asyncio.sleep(delay)
            attempt = await self.dispatcher.post(self.endpoint, self.signer, event.id, body)
            attempts += 1
            if attempt.outcome == "delivered":
                if recorded:
                    self.cursor = event.sequence
                    async with self.store.write() as connection:
                        await self.store.webhooks.forget(connection, self._key(event.sequence))
                        await self._save(connection)
                return
            if attempt.outcome == "gone":
                await self._disable()
            now = utc_now()
            final = attempts >= len(self.schedule)
            due = None if final else now + timedelta(seconds=self.schedule[attempts])
            async with self.store.write() as connection:
                await self.store.webhooks.record(
                    connection,
                    self._key(event.sequence),
                    event.id,
                    DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
                    attempts,
                    due,
                    attempt.status_code,
                    attempt.error,
                    now,
                )
                # Settled when final; otherwise the cursor stays just before it.
                self.cursor = event.sequence if final else event.sequence - 1
                await self._save(connection)
            recorded = True
            if final:
                self.dispatcher.failed()
                log.warning(
                    "webhook %s: event %s failed after %d attempts (%s)",
                    self.endpoint.id,
                    event.sequence,
                    attempts,
                    attempt.error,
                )
                return

    async def _retry(self, delivery: Delivery) -> None:
        """One more attempt of a FAILED delivery that RetryDelivery queued."""
        async with self.store.read() as connection:
            found = await self.store.events.after(
                connection, self.endpoint.tenant, delivery.sequence - 1, 1
            )
        event = found[0] if found and found[0].sequence == delivery.sequence else None
        if event is None:
            attempt = Attempt("refused", error="the event is no longer retained")
        else:
            attempt = await self.dispatcher.post(
                self.endpoint, self.signer, event.id, delivery_body(event)
            )
        if attempt.outcome == "gone":
            await self._disable()
        delivered = attempt.outcome == "delivered"
        async with self.store.write() as connection:
            await self.store.webhooks.record(
                connection,
                self._key(delivery.sequence),
                delivery.event_id,
                DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED,
                delivery.attempts + 1,
                None,
                attempt.status_code,
                None if delivered else attempt.error,
                utc_now(),
            )

    async def _disable(self) -> None:
        log.warning("webhook %s answered 410 Gone: it is now inactive", self.endpoint.id)
        async with self.store.write() as connection:
            await self.store.webhooks.disable(
                connection, self.endpoint.tenant, self.endpoint.id, self.dispatcher.owner, utc_now()
            )
        raise EndpointGone
