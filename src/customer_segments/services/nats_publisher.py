"""The NATS JetStream publisher (--events-nats-url): every event of the outbox is also
published to `customer-segment.<tenant>.<event type>`, and counts as published only once
JetStream has acknowledged it.

A background task of each serve process. Each tenant's cursor (event_consumers, consumer
"nats") is held by one process at a time through a lease, so that with --workers N or several
instances each event goes out once in the normal case. The cursor advances only after the acks
of everything before it: a process that dies mid-publish leaves its events to be published
again by whoever takes the lease over, and JetStream drops the repeats by their Nats-Msg-Id
(the event id) within the stream's duplicate window (2 minutes by default, far above the
lease). A NATS or database outage never stops the server: the task logs once, retries with
backoff, and readiness does not follow NATS (the service serves without it; events wait in
the outbox for as long as it is retained)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import secrets
import socket
from asyncio import FIRST_COMPLETED
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck, StorageType

from customer_segments import metrics
from customer_segments.domain.events import message
from customer_segments.store.database import utc_now
from customer_segments.store.event_consumers import Claim
from customer_segments.store.events import StoredEvent
from customer_segments.store.store import Store

log = logging.getLogger(__name__)

# The consumer's name in event_consumers.
CONSUMER = "nats"
# Subjects are SUBJECT_PREFIX.<tenant>.<event type>; a tenant is [a-z][a-z0-9]{2,15}
# (domain/validation.py), always one subject token.
SUBJECT_PREFIX = "customer-segment"
STREAM_SUBJECTS = f"{SUBJECT_PREFIX}.>"
DEFAULT_STREAM = "CUSTOMER_SEGMENTS"
MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"
# The status of the answer when nothing (no stream) takes the subject.
NO_RESPONDERS = "503"
TENANT_HEADER = "Customer-Segment-Tenant"
SEQUENCE_HEADER = "Customer-Segment-Sequence"
# JetStream's default; the window in which a repeated Nats-Msg-Id is dropped.
DUPLICATE_WINDOW_S = 120.0
# Far below the duplicate window: a dead holder's events are published again by the next
# holder well within it.
LEASE_S = 30.0
# Events read and published at once per tenant, their acks awaited together.
BATCH = 1000
ACK_TIMEOUT_S = 10.0
# Tenants claimed at once, at most: one statement's worth of bound values.
TENANTS_PER_ROUND = 100
CONNECT_TIMEOUT_S = 5
FIRST_RETRY_S = 0.5
LAST_RETRY_S = 30.0
STOP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class NatsOptions:
    # One URL or several, comma-separated (a cluster's seed servers).
    url: str
    stream: str = DEFAULT_STREAM
    poll_interval: float = 0.25
    lease_seconds: float = LEASE_S
    batch: int = BATCH
    ack_timeout: float = ACK_TIMEOUT_S
    # Reconnects: the first after `first_retry` seconds, doubling up to `last_retry`.
    first_retry: float = FIRST_RETRY_S
    last_retry: float = LAST_RETRY_S


class NotAcknowledged(Exception):
    """JetStream did not acknowledge an event: the rest waits for the next connection."""


def subject(event: StoredEvent) -> str:
    # Event types have dots (customer-segment.segment-created): more tokens, which a
    # subscriber matches with customer-segment.<tenant>.>.
    return f"{SUBJECT_PREFIX}.{event.tenant}.{event.type}"


def message_body(event: StoredEvent) -> bytes:
    """What a webhook receives: {"type", "timestamp", "data"}."""
    return message(event.type, event.occurred_at, event.payload).encode()


def message_headers(event: StoredEvent) -> dict[str, str]:
    return {
        MSG_ID_HEADER: event.id,
        TENANT_HEADER: event.tenant,
        SEQUENCE_HEADER: str(event.sequence),
    }


def default_owner() -> str:
    """Unique per process start: a restarted process must not count as the holder of the
    leases its previous life left."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _Acks:
    """JetStream publishes and their acks, awaited together: each publish is a plain NATS
    publish whose reply subject lies under an inbox of this connection, where JetStream
    answers.
    What nats-py's publish_async does, less its futures that never resolve when JetStream
    answers with an error (nats-io/nats.py#985): a refused publish would look like a lost ack.
    One request per event (nats-py's publish) instead costs a task and a timer each: a third
    of the rate, measured."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._prefix = client.new_inbox() + "."
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}

    async def listen(self) -> None:
        await self._client.subscribe(self._prefix + "*", cb=self._answer)

    async def publish(
        self, subject: str, body: bytes, headers: dict[str, str]
    ) -> asyncio.Future[PubAck]:
        token = str(next(self._tokens))
        ack: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._waiting[token] = ack
        try:
            await self._client.publish(subject, body, reply=self._prefix + token, headers=headers)
        except BaseException:
            del self._waiting[token]
            raise
        return ack

    def forget(self, acks: Sequence[asyncio.Future[PubAck]]) -> None:
        """Gives up on the acks still awaited (their answers, if any come, are dropped) and
        on the refusals after the first (read, or asyncio logs each as never retrieved)."""
        for ack in acks:
            if not ack.done():
                ack.cancel()
            elif not ack.cancelled():
                ack.exception()
        if all(ack.done() for ack in self._waiting.values()):
            self._waiting.clear()

    async def _answer(self, message: Msg) -> None:
        ack = self._waiting.pop(message.subject[len(self._prefix) :], None)
        if ack is None or ack.done():
            return
        if message.headers and message.headers.get(Header.STATUS) == NO_RESPONDERS:
            ack.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            answer = json.loads(message.data)
            if "error" in answer:
                error = answer["error"]
                ack.set_exception(
                    nats.js.errors.APIError(
                        code=error.get("code"),
                        description=error.get("description"),
                        err_code=error.get("err_code"),
                    )
                )
            else:
                ack.set_result(PubAck.from_response(answer))
        except (ValueError, TypeError, KeyError) as error:
            ack.set_exception(error)


class NatsPublisher:
    """start() runs it in the background; stop() ends it and gives its leases up."""

    def __init__(self, store: Store, options: NatsOptions, owner: str | None = None) -> None:
        self.store = store
        self.options = options
        self.owner = owner or default_owner()
        self._task: asyncio.Task[None] | None = None
        # Why publishing stopped, while it is stopped: logged once per outage.
        self._trouble: str | None = None
        # The last session got as far as publishing: the next retry comes soon.
        self._published = False
        self._woken = asyncio.Event()
        self._instruments = metrics.instruments()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nats-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S), self.store.single_statement() as connection:
                await self.store.event_consumers.release(connection, CONSUMER, self.owner)
        except Exception as error:  # the leases run out by themselves
            log.info("NATS publisher: leases not given up (%s); they run out", _reason(error))

    async def _run(self) -> None:
        delay = self.options.first_retry
        while True:
            self._published = False
            try:
                await self._session()
            except Exception as error:  # NATS or the database: retried, never fatal
                if self._trouble is None:
                    log.warning(
                        "NATS publisher cannot publish (%s): events wait in the outbox; retrying",
                        _reason(error),
                    )
                self._trouble = _reason(error)
            if self._published:
                delay = self.options.first_retry
            # Jittered, so that the workers of an instance do not retry in step.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.options.last_retry)

    async def _session(self) -> None:
        """One connection, publishing until it or the database fails (it raises then)."""
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        async def on_error(error: Exception) -> None:
            # nats-py's default callback logs each error; an outage is logged once, in _run.
            log.debug("NATS: %s", _reason(error))

        client = await nats.connect(
            servers=[url.strip() for url in self.options.url.split(",")],
            name="customer-segments",
            # This loop reconnects, with its own backoff; the cursors say where to resume.
            # nats-py's connect() tries each server again (1 is its least) and would wait
            # 2 s before that.
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            connect_timeout=CONNECT_TIMEOUT_S,
            closed_cb=on_closed,
            error_cb=on_error,
        )
        try:
            await self._ensure_stream(client.jetstream())
            acks = _Acks(client)
            await acks.listen()
            while True:
                if closed.is_set():
                    raise ConnectionError("the connection to NATS was closed")
                busy = await self._round(acks, closed)
                self._published = True
                if self._trouble is not None:
                    log.info("NATS publisher publishing again (after %s)", self._trouble)
                    self._trouble = None
                if not busy:
                    await self._idle(closed)
        finally:
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await client.close()
            except Exception as error:
                log.debug("NATS: close: %s", _reason(error))

    def wake(self) -> None:
        """Looks for new events now rather than at the next poll (for a notifier of commits)."""
        self._woken.set()

    async def _idle(self, closed: asyncio.Event) -> None:
        """Until the next poll, a wake() or the connection's end."""
        waits = [asyncio.ensure_future(closed.wait()), asyncio.ensure_future(self._woken.wait())]
        await asyncio.wait(waits, timeout=self.options.poll_interval, return_when=FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        self._woken.clear()

    async def _ensure_stream(self, stream: JetStreamContext) -> None:
        """Creates the stream when it is absent (file storage, no limits); one that exists is
        used as it is, never changed: an operator who wants limits, replicas or a longer
        duplicate window creates it beforehand."""
        name = self.options.stream
        try:
            await stream.stream_info(name)
        except nats.js.errors.NotFoundError:
            await stream.add_stream(
                name=name,
                subjects=[STREAM_SUBJECTS],
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
            )
            log.info("created the JetStream stream %s for %s", name, STREAM_SUBJECTS)

    async def _round(self, acks: _Acks, closed: asyncio.Event) -> bool:
        """Publishes the backlogs of the tenants this process can take; False when none
        had one."""
        repository = self.store.event_consumers
        now = utc_now()
        async with self.store.read() as connection:
            tenants = await repository.tenants_with_work(connection, CONSUMER, self.owner, now)
        if not tenants:
            return False
        if len(tenants) > TENANTS_PER_ROUND:
            # At random, so that no tenant waits behind others that always have work.
            tenants = sorted(random.sample(tenants, TENANTS_PER_ROUND))
        until = now + timedelta(seconds=self.options.lease_seconds)
        async with self.store.write() as connection:
            claims = await repository.claim(connection, CONSUMER, self.owner, tenants, now, until)
        for claim in claims:
            await self._publish_tenant(acks, claim, closed)
        return bool(claims)

    async def _publish_tenant(self, acks: _Acks, claim: Claim, closed: asyncio.Event) -> None:
        """The tenant's events after its cursor, batch by batch, until none is left or the
        lease is lost (taken over after it ran out)."""
        cursor = claim.last_sequence
        while True:
            async with self.store.read() as connection:
                batch = await self.store.events.after(
                    connection, claim.tenant, cursor, self.options.batch
                )
            if not batch:
                return
            if batch[0].sequence > cursor + 1:
                log.warning(
                    "NATS publisher: events %d to %d of tenant %s were pruned from the outbox "
                    "before they were published",
                    cursor + 1,
                    batch[0].sequence - 1,
                    claim.tenant,
                )
            acknowledged, failure = await self._publish(acks, batch, closed)
            if acknowledged:
                cursor = acknowledged[-1].sequence
                until = utc_now() + timedelta(seconds=self.options.lease_seconds)
                async with self.store.single_statement() as connection:
                    held = await self.store.event_consumers.advance(
                        connection, CONSUMER, self.owner, claim.tenant, cursor, until
                    )
                if not held:
                    return
            if failure is not None:
                raise NotAcknowledged(
                    f"event {cursor + 1} of tenant {claim.tenant} was not acknowledged: {failure}"
                )
            if len(batch) < self.options.batch:
                return

    async def _publish(
        self, acks: _Acks, batch: Sequence[StoredEvent], closed: asyncio.Event
    ) -> tuple[list[StoredEvent], str | None]:
        """Publishes the batch, in sequence order, and awaits its acks together: the events
        acknowledged before the first that was not (the cursor may move past those only),
        and why that one was not (None when all were)."""
        pending: list[asyncio.Future[PubAck]] = []
        failure: str | None = None
        try:
            for event in batch:
                headers = message_headers(event)
                # An error rather than another stream's capture of the subject.
                headers[EXPECTED_STREAM_HEADER] = self.options.stream
                pending.append(await acks.publish(subject(event), message_body(event), headers))
        except Exception as error:  # the connection went; what was sent may still be acked
            failure = _reason(error)
        if pending:
            waits: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(asyncio.wait(pending)),
                asyncio.ensure_future(closed.wait()),
            ]
            await asyncio.wait(waits, timeout=self.options.ack_timeout, return_when=FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
        acknowledged: list[StoredEvent] = []
        for event, ack in zip(batch, pending, strict=False):
            if not ack.done():
                failure = (
                    "the connection was closed"
                    if closed.is_set()
                    else f"no ack within {self.options.ack_timeout:g}s"
                )
                break
            refused = ack.exception()
            if refused is not None:
                failure = _reason(refused)
                break
            acknowledged.append(event)
            self._count(ack.result())
        acks.forget(pending[len(acknowledged) :])
        if len(acknowledged) < len(batch):
            failure = failure or "not sent"
            if self._instruments is not None:
                self._instruments.nats_failed.inc(len(batch) - len(acknowledged))
        return acknowledged, failure

    def _count(self, ack: PubAck) -> None:
        if self._instruments is None:
            return
        if ack.duplicate:
            self._instruments.nats_duplicate.inc()
        else:
            self._instruments.nats_acked.inc()
