"""Webhook delivery by real `serve` processes: kill -9 during a delivery loses nothing (the
same webhook-id arrives after a restart), and two workers deliver each event once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import aiohttp
from standardwebhooks import Webhook as Verifier

from customer_segments.domain.webhooks import EVENT_TYPES
from customer_segments.store.database import Database, utc_now
from customer_segments.store.events import NewEvent, StoredEvent
from customer_segments.store.store import Store
from tests.e2e.test_metrics import samples, scrape, value
from tests.e2e.test_service_process import Service, _running, free_port, pre_migrated, start
from tests.webhook_receiver import receiving

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# A lease that runs out soon after a kill; polls well within it.
QUICK = (
    "--webhook-lease-seconds",
    "1.5",
    "--webhook-poll-interval-seconds",
    "0.1",
    "--webhook-retry-schedule",
    "0s,1s",
    "--webhook-timeout-seconds",
    "120",
)


async def _subscribe(service: Service, url: str) -> str:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {service.admin_token}"}) as http,
        http.post(
            f"{service.http}/customer-segment/acme/webhooks",
            json={"destinationUrl": url, "secretKey": SECRET},
        ) as created,
    ):
        assert created.status == 201, await created.text()
        webhook_id: str = (await created.json())["id"]
        return webhook_id


async def _append(data_dir: Path, count: int) -> list[StoredEvent]:
    """Events as the outbox stores them, written into the service's own database."""
    store = Store(Database(f"sqlite:///{data_dir / 'customer-segments.db'}"))
    try:
        async with store.write() as connection:
            return await store.events.append(
                connection,
                "acme",
                [
                    NewEvent(EVENT_TYPES[0], "gold", {"tenant": "acme", "n": n})
                    for n in range(count)
                ],
                utc_now(),
            )
    finally:
        await store.close()


async def test_kill_9_during_a_delivery_loses_nothing_and_two_workers_deliver_each_event_once(
    tmp_path: Path,
) -> None:
    """One instance is killed while a receiver holds a delivery; the instance started after it
    (with two workers: a start costs seconds on a busy machine, so one restart shows both)
    delivers that event again with the same webhook-id, then every later event once per
    endpoint, in order, whichever worker holds the endpoint."""
    pre_migrated(tmp_path / "data")
    async with receiving(hold=asyncio.Event()) as receiver:
        with _running(await asyncio.to_thread(start, tmp_path, *QUICK)) as first:
            await _subscribe(first, f"{receiver.url}/a")
            held, following = await _append(first.data_dir, 2)
            await receiver.wait_for(1)  # the receiver holds it: the delivery is in flight
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait()
        assert receiver.hold is not None
        receiver.hold.set()  # from now on every request is answered at once
        metrics_port = free_port()
        second = await asyncio.to_thread(
            start, tmp_path, "--workers", "2", "--metrics-port", str(metrics_port), *QUICK
        )
        with _running(second):
            arrived = await receiver.wait_for(3)
            await _subscribe(second, f"{receiver.url}/b")
            events = [event for _ in range(5) for event in await _append(second.data_dir, 10)]
            await receiver.wait_for(3 + 2 * len(events))
            await asyncio.sleep(1.0)  # time for a duplicate, if a second worker sent one
            found = samples(await asyncio.to_thread(scrape, metrics_port))
    assert [r.webhook_id for r in arrived] == [held.id, held.id, following.id]
    for request in arrived[1:]:
        Verifier(SECRET).verify(request.body, request.headers)
    later = receiver.received[3:]
    counted = Counter((r.path, r.webhook_id) for r in later)
    assert set(counted) == {(f"/hook/{name}", event.id) for name in "ab" for event in events}
    assert set(counted.values()) == {1}
    for name in "ab":
        order = [r.webhook_id for r in later if r.path == f"/hook/{name}"]
        assert order == [event.id for event in events]
    # Counted over both workers, by outcome only (no endpoint or tenant label).
    delivered = value(found, "customer_segments_webhook_attempts_total", outcome="delivered")
    assert delivered == 2 + 2 * len(events)
    assert value(found, "customer_segments_webhook_attempts_total", outcome="rejected") == 0
