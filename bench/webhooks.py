"""Webhook deliveries per second to a local aiohttp receiver, and the delay from an event's
commit to its arrival (p50, p99).

In one process: the outbox (events appended with store.events.append, as the write paths
will) and a WebhookDispatcher, as in a serve process. In another: the receiver, an aiohttp
server on loopback that answers 204 and notes when each webhook-id arrived. Two phases, on a
fresh tenant with --endpoints endpoints (all event types):
1. backlog: --events events committed first, then the dispatcher starts; deliveries per
   second is every endpoint's deliveries over the time from its start to the last arrival
   (target >= 1,000/s);
2. live: the dispatcher running, --live-events events committed at --rate per second in
   batches of 10; the delay of each is its arrival minus its commit (p50, p99).

Usage: .venv/bin/python bench/webhooks.py [--database-url URL] [--events N] [--endpoints N]
[--live-events N] [--rate N] [--poll-interval S]. Without --database-url, an SQLite file in
a temporary folder. bench/events.py calls measure_webhooks() for its one-run report.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from aiohttp import web

from customer_segments.domain.webhooks import EVENT_TYPES, WebhookInput, generated_secret
from customer_segments.services.webhook_delivery import DeliverySettings, WebhookDispatcher
from customer_segments.store.database import Database, utc_now
from customer_segments.store.events import NewEvent
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store

TARGET_PER_SECOND = 1000.0
LIVE_BATCH = 10


@dataclass(frozen=True)
class WebhookResult:
    endpoints: int
    deliveries: int
    deliveries_per_second: float
    delay_p50_ms: float
    delay_p99_ms: float

    def lines(self) -> list[str]:
        met = "met" if self.deliveries_per_second >= TARGET_PER_SECOND else "MISSED"
        return [
            f"webhook deliveries/s to a local receiver ({self.endpoints} endpoints, "
            f"{self.deliveries} deliveries): {self.deliveries_per_second:,.0f} "
            f"(target >= {TARGET_PER_SECOND:,.0f}: {met})",
            f"webhook delay from commit to arrival: p50 {self.delay_p50_ms:.0f} ms, "
            f"p99 {self.delay_p99_ms:.0f} ms",
        ]


def _receive(port_out: Connection, expected: int) -> None:
    """The receiver process: answers 204, sends back (webhook-id, path, arrival) when
    `expected` requests have arrived."""

    async def main() -> None:
        arrivals: list[tuple[str, str, float]] = []
        done = asyncio.Event()

        async def hook(request: web.Request) -> web.Response:
            await request.read()
            arrivals.append((request.headers["webhook-id"], request.path, time.time()))
            if len(arrivals) >= expected:
                done.set()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_out.send(int(runner.addresses[0][1]))
        await done.wait()
        port_out.send(arrivals)
        await runner.cleanup()

    asyncio.run(main())


async def _append(store: Store, tenant: str, count: int) -> list[tuple[str, float]]:
    """(event id, commit time) of `count` events, committed in one transaction."""
    async with store.write() as connection:
        stored = await store.events.append(
            connection,
            tenant,
            [NewEvent(EVENT_TYPES[0], "gold", {"tenant": tenant, "n": n}) for n in range(count)],
            utc_now(),
        )
    committed = time.time()
    return [(event.id, committed) for event in stored]


async def _phase(
    store: Store,
    settings: DeliverySettings,
    endpoints: int,
    events: int,
    rate: float | None,
) -> tuple[float, list[float]]:
    """(deliveries per second, delays in ms) of one phase on a fresh tenant."""
    tenant = "b" + secrets.token_hex(6)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    receiver = context.Process(target=_receive, args=(child, events * endpoints), daemon=True)
    receiver.start()
    port = await asyncio.to_thread(parent.recv)
    async with store.write() as connection:
        for n in range(endpoints):
            endpoint = WebhookInput(f"http://127.0.0.1:{port}/hook/{n}", "", {}, (), True)
            await store.webhooks.create(
                connection, tenant, f"bench{n}", endpoint, generated_secret(), utc_now()
            )
    dispatcher = WebhookDispatcher(store, settings)
    commits: list[tuple[str, float]] = []
    if rate is None:  # a backlog, then delivery
        for _ in range(0, events, 1000):
            commits += await _append(store, tenant, min(1000, events - len(commits)))
        started = time.time()
        await dispatcher.start()
    else:
        await dispatcher.start()
        started = time.time()
        while len(commits) < events:
            commits += await _append(store, tenant, min(LIVE_BATCH, events - len(commits)))
            await asyncio.sleep(LIVE_BATCH / rate)
    arrivals: list[tuple[str, str, float]] = await asyncio.to_thread(parent.recv)
    await dispatcher.stop()
    receiver.join(10)
    committed_at = dict(commits)
    delays = [(arrived - committed_at[event_id]) * 1000 for event_id, _, arrived in arrivals]
    finished = max(arrived for _, _, arrived in arrivals)
    return len(arrivals) / (finished - started), delays


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure_webhooks(
    database_url: str,
    *,
    events: int = 5000,
    endpoints: int = 8,
    live_events: int = 1000,
    rate: float = 200.0,
    poll_interval: float = 0.5,
) -> WebhookResult:
    """The numbers of the module docstring, on `database_url` (migrated here)."""
    database = Database(database_url)
    await upgrade_to_head(database)
    store = Store(database)
    settings = DeliverySettings(poll_interval_seconds=poll_interval)
    try:
        per_second, _ = await _phase(store, settings, endpoints, events, None)
        _, delays = await _phase(store, settings, 1, live_events, rate)
    finally:
        await store.close()
    return WebhookResult(
        endpoints,
        events * endpoints,
        per_second,
        statistics.median(delays),
        _percentile(delays, 0.99),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=8)
    parser.add_argument("--live-events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = arguments.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        result = asyncio.run(
            measure_webhooks(
                url,
                events=arguments.events,
                endpoints=arguments.endpoints,
                live_events=arguments.live_events,
                rate=arguments.rate,
                poll_interval=arguments.poll_interval,
            )
        )
    for line in result.lines():
        print(line)


if __name__ == "__main__":
    main()
