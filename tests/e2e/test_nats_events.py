"""`serve --events-nats-url`: a real instance publishes its outbox to a real nats-server, each
event once, counts it in /metrics, keeps serving when NATS goes away (readiness does not follow
NATS), and gives its leases up when it stops.

One worker: with two, the start alone took 10-20 s on the busy 2-core machine; two publishers
on one database are tested in-process (tests/integration/test_nats_publisher.py)."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from customer_segments.store.database import Database
from customer_segments.store.store import Store
from tests.e2e.test_metrics import samples, scrape, value
from tests.e2e.test_service_process import free_port, pre_migrated, start
from tests.integration.test_nats_publisher import append, cursor, eventually_at, new_tenant
from tests.nats_server import ARRIVAL_TIMEOUT_S, NatsServer, stored, watching

pytestmark = pytest.mark.asyncio(loop_scope="session")

OUTAGE_LINE = "NATS publisher cannot publish"


def readiness(service_http: str) -> int:
    with urllib.request.urlopen(f"{service_http}/readyz", timeout=10) as answer:
        status: int = answer.status
        return status


async def test_serve_publishes_each_event_once_and_outlives_nats(
    tmp_path: Path,
) -> None:
    nats_server = NatsServer(tmp_path / "nats")
    nats_server.start()
    metrics_port = free_port()
    pre_migrated(tmp_path / "data")
    service = start(
        tmp_path,
        "--events-nats-url",
        nats_server.url,
        "--events-nats-poll-seconds",
        "0.05",
        "--metrics-port",
        str(metrics_port),
    )
    # The instance's own database file, written as its write paths would.
    store = Store(Database(f"sqlite:///{tmp_path / 'data' / 'customer-segments.db'}"))
    try:
        tenant = new_tenant()
        async with watching(nats_server, tenant) as publishes:
            for batch in range(5):
                await append(store, tenant, 20, first=20 * batch)
            await stored(nats_server, tenant, 100)
            await eventually_at(store, tenant, 100)
        assert publishes.sequences() == list(range(1, 101))
        found = samples(scrape(metrics_port))
        counter = "customer_segments_nats_events_published_total"
        assert value(found, counter, outcome="acked") == 100
        assert value(found, counter, outcome="failed") == 0

        nats_server.stop()
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while OUTAGE_LINE not in service.output():
            assert time.monotonic() < deadline, service.output()
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # a retry or two (the first after 0.25-0.5 s): not logged again
        assert readiness(service.http) == 200
        assert service.output().count(OUTAGE_LINE) == 1

        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(60) == 0, service.output()
        assert await cursor(store, tenant) == (100, None)  # the lease given up
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()
        nats_server.stop()
        await store.close()
