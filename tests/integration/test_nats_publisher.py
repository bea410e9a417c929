"""The NATS JetStream publisher against a real nats-server, on both databases: every event
reaches the stream once, in order, with its subject, Nats-Msg-Id, headers and body; the cursor
waits for the acks; leases keep two publishers from publishing an event twice, and a dead
holder's lease is taken over.

The events are appended with store.events.append, as the write paths do. Publishes are also
counted on a plain (core NATS) subscription, which sees every publish, the repeats that
JetStream drops as duplicates included."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from sqlalchemy import select, update

from customer_segments.services.nats_publisher import (
    CONSUMER,
    DEFAULT_STREAM,
    NatsOptions,
    NatsPublisher,
)
from customer_segments.store.database import Database, utc_now
from customer_segments.store.events import NewEvent, StoredEvent
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store
from customer_segments.store.tables import event_consumers
from tests.conftest import BACKENDS, fresh_postgres_database, require_postgres
from tests.nats_server import ARRIVAL_TIMEOUT_S, NatsServer, client, header, stored, watching

pytestmark = pytest.mark.asyncio(loop_scope="session")

TYPES = (
    "customer-segment.segment-created",
    "customer-segment.customer-assignment-created",
    "customer-segment.customer-assignment-deleted",
)


@pytest_asyncio.fixture(scope="module", params=BACKENDS, loop_scope="session")
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Store]:
    """A database of this module's own: the suite's shared one holds the events of every other
    test, whose tenants a publisher would take turns with the tenants under test."""
    with ExitStack() as stack:
        if request.param == "postgresql":
            require_postgres()
            url = stack.enter_context(fresh_postgres_database("cs_nats"))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('nats-db') / 'nats.db'}"
        database = Database(url)
        await upgrade_to_head(database)
        own = Store(database)
        yield own
        await own.close()


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One server for the tests that do not stop it; each test has tenants of its own."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of the test's own, not started yet, which it may stop and start."""
    server = NatsServer(tmp_path / "nats")
    yield server
    server.stop()


def new_tenant() -> str:
    return "t" + secrets.token_hex(6)


async def append(store: Store, tenant: str, count: int, first: int = 0) -> list[StoredEvent]:
    """`count` events in one transaction, as one write path would store them."""
    new_events = [
        NewEvent(TYPES[n % len(TYPES)], f"s{n}", {"tenant": tenant, "id": f"s{n}", "n": n})
        for n in range(first, first + count)
    ]
    async with store.write() as connection:
        return await store.events.append(connection, tenant, new_events, utc_now())


@asynccontextmanager
async def publishing(
    store: Store, server: NatsServer, owner: str | None = None, **options: Any
) -> AsyncIterator[NatsPublisher]:
    settings: dict[str, Any] = {
        "poll_interval": 0.05,
        "first_retry": 0.05,
        "last_retry": 0.5,
        "ack_timeout": 10.0,
    }
    publisher = NatsPublisher(store, NatsOptions(server.url, **(settings | options)), owner)
    publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


async def cursor(store: Store, tenant: str) -> tuple[int, str | None]:
    """Where the NATS consumer's cursor of the tenant stands, and who holds it."""
    async with store.read() as connection:
        row = (
            await connection.execute(
                select(event_consumers.c.last_sequence, event_consumers.c.lease_owner).where(
                    event_consumers.c.tenant == tenant, event_consumers.c.consumer == CONSUMER
                )
            )
        ).one_or_none()
    return (0, None) if row is None else (int(row.last_sequence), row.lease_owner)


async def eventually_at(store: Store, tenant: str, sequence: int) -> None:
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while (await cursor(store, tenant))[0] != sequence:
        assert time.monotonic() < deadline, await cursor(store, tenant)
        await asyncio.sleep(0.05)


async def published(
    store: Store, server: NatsServer, tenant: str, count: int, cursor_at: int
) -> list[Msg]:
    """The tenant's `count` messages in the stream, once its cursor is at `cursor_at` too."""
    messages = await stored(server, tenant, count)
    await eventually_at(store, tenant, cursor_at)
    return messages


def expected_body(event: StoredEvent) -> dict[str, Any]:
    moment = event.occurred_at
    timestamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return {"type": event.type, "timestamp": timestamp, "data": event.payload}


async def test_every_event_reaches_the_stream_once_in_order_with_its_subject_id_and_body(
    store: Store, nats_server: NatsServer
) -> None:
    tenant, other = new_tenant(), new_tenant()
    # Batches of 40: the 250 events take several, and their acks are awaited together.
    async with watching(nats_server, tenant) as publishes, publishing(store, nats_server, batch=40):
        events = await append(store, tenant, 100)
        await append(store, other, 3)
        events += await append(store, tenant, 150, first=100)
        messages = await published(store, nats_server, tenant, len(events), 250)
    assert [message.subject for message in messages] == [
        f"customer-segment.{tenant}.{event.type}" for event in events
    ]
    assert messages[0].subject == f"customer-segment.{tenant}.customer-segment.segment-created"
    for message, event in zip(messages, events, strict=True):
        assert message.headers == {
            "Nats-Msg-Id": event.id,
            "Customer-Segment-Tenant": tenant,
            "Customer-Segment-Sequence": str(event.sequence),
            "Nats-Expected-Stream": DEFAULT_STREAM,
        }
        assert json.loads(message.data) == expected_body(event)
    assert publishes.sequences() == list(range(1, 251))  # each published once
    assert len(await stored(nats_server, other, 3)) == 3


async def test_a_wake_up_publishes_without_waiting_for_the_poll(
    store: Store, nats_server: NatsServer
) -> None:
    tenant = new_tenant()
    await append(store, tenant, 1)
    async with publishing(store, nats_server, poll_interval=3600) as publisher:
        await eventually_at(store, tenant, 1)  # its first look, once connected
        await asyncio.sleep(0.5)  # and the one after, which found nothing: it waits now
        await append(store, tenant, 1, first=1)
        publisher.wake()  # what a notifier of the outbox's commits calls
        await stored(nats_server, tenant, 2)


async def test_events_written_while_nats_is_down_arrive_once_it_is_back(
    store: Store, own_nats_server: NatsServer
) -> None:
    """The publisher starts before NATS, survives its restart, and the cursor moves only
    past what JetStream acknowledged."""
    server, tenant = own_nats_server, new_tenant()
    async with publishing(store, server):
        events = await append(store, tenant, 10)
        server.start()  # after the publisher: its first attempts found nothing
        await published(store, server, tenant, 10, 10)
        server.stop()
        events += await append(store, tenant, 20, first=10)
        await asyncio.sleep(0.5)  # several attempts, each finding no NATS
        assert (await cursor(store, tenant))[0] == 10
        server.start()
        messages = await published(store, server, tenant, 30, 30)
    assert [header(message, "Nats-Msg-Id") for message in messages] == [e.id for e in events]


async def test_events_that_jetstream_refuses_stay_unpublished_until_it_takes_them(
    store: Store, own_nats_server: NatsServer
) -> None:
    """NATS answers, but the subjects belong to another stream, so JetStream refuses each
    publish (Nats-Expected-Stream): the cursor stays until our stream takes them."""
    server, tenant = own_nats_server, new_tenant()
    server.start()
    async with publishing(store, server), client(server) as (_, stream):
        await append(store, tenant, 5)
        await published(store, server, tenant, 5, 5)
        await stream.delete_stream(DEFAULT_STREAM)
        await stream.add_stream(name="OTHER", subjects=[f"customer-segment.{tenant}.>"])
        events = await append(store, tenant, 5, first=5)
        await asyncio.sleep(0.5)  # several attempts, each refused
        assert (await cursor(store, tenant))[0] == 5
        assert (await stream.stream_info("OTHER")).state.messages == 0
        await stream.delete_stream("OTHER")  # the publisher makes its stream again
        messages = await published(store, server, tenant, 5, 10)
    assert [header(message, "Nats-Msg-Id") for message in messages] == [e.id for e in events]


async def test_two_publishers_on_one_database_publish_each_event_once(
    store: Store, nats_server: NatsServer
) -> None:
    tenants = [new_tenant() for _ in range(3)]
    async with (
        watching(nats_server, tenants[0]) as first,
        watching(nats_server, tenants[1]) as second,
        watching(nats_server, tenants[2]) as third,
        publishing(store, nats_server, owner="publisher-a"),
        publishing(store, nats_server, owner="publisher-b"),
    ):
        for round_ in range(4):
            for tenant in tenants:
                await append(store, tenant, 25, first=25 * round_)
        for tenant in tenants:
            await published(store, nats_server, tenant, 100, 100)
    for publishes in (first, second, third):
        assert publishes.sequences() == list(range(1, 101))


async def test_a_live_lease_is_respected_and_an_expired_one_taken_over(
    store: Store, nats_server: NatsServer
) -> None:
    """A holder that died after its publishes were acknowledged but before its cursor moved:
    the next holder publishes those events again, and JetStream drops the repeats."""
    tenant = new_tenant()
    events = await append(store, tenant, 20)
    async with publishing(store, nats_server):
        await published(store, nats_server, tenant, 20, 20)

    async def dead_holder(lease_until: Any) -> None:
        async with store.write() as connection:
            await connection.execute(
                update(event_consumers)
                .where(event_consumers.c.tenant == tenant, event_consumers.c.consumer == CONSUMER)
                .values(last_sequence=10, lease_owner="dead-process", lease_until=lease_until)
            )

    await dead_holder(utc_now() + timedelta(hours=1))
    async with watching(nats_server, tenant) as publishes, publishing(store, nats_server) as taker:
        events += await append(store, tenant, 5, first=20)
        await asyncio.sleep(0.5)  # ten polls: the lease is another's
        assert publishes.messages == []
        await dead_holder(utc_now() - timedelta(seconds=1))
        await eventually_at(store, tenant, 25)
        assert (await cursor(store, tenant))[1] == taker.owner
        messages = await stored(nats_server, tenant, 25)
    assert publishes.sequences() == list(range(11, 26))  # 11 to 20 again, dropped by JetStream
    assert [header(message, "Nats-Msg-Id") for message in messages] == [e.id for e in events]
