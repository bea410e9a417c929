"""What change events cost and how fast they reach a watcher, on PostgreSQL, in one run.

1. Two `customer-segments serve` processes (--workers 1), each on a migrated database of its
   own (PGURL, as bench/run.py): one with events (the default), one with --no-events; one
   segment in each.
2. Bulk upsert rows/s with events on and off: bench/bulk_client.py's BulkUpsertAssignments
   (inserts, then updates of the same keys), --rows rows per phase, the two servers in turn
   for --rounds rounds (each round starting with another), medians. Target: on >= 80% of off.
3. Events/s received by one WatchEvents stream: the stream reads the whole outbox of the
   events-on database from sequence 0 (the backlog the bulk runs wrote). Target >= 5,000/s.
4. Commit to arrival: a stream watches live while one more bulk insert runs; for each event,
   arrival time minus its occurred_at (the write's timestamp, taken as its chunk's transaction
   starts, so the figure bounds commit-to-arrival from above), p50 and p99. That stream is
   bound by its read rate (the bulk writes faster than one stream reads), so a write alone is
   measured too, on both databases: --live-writes single UpsertAssignment calls one after the
   other, each timed from its call's start to its event's arrival at a live stream (a bound
   from above on commit to arrival), p50 and p99, on the events-on PostgreSQL server and on a
   server of the embedded SQLite (its own file). Target: p99 <= 1 s on each.
5. Webhook deliveries/s of a backlog to a local receiver (8 endpoints, target >= 1,000/s),
   then commit to arrival of live events to one endpoint: bench/webhooks.py, on a database of
   its own.
A table, also written to bench/reports/events-latest.md. Every server is stopped and every
database dropped, failure or not.

Usage: make bench-events, or .venv/bin/python bench/events.py [--help]. Exit status 1 when a
step fails, a check does not hold, or a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from statistics import median, quantiles

import grpc
import webhooks
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, events_pb2, events_pb2_grpc
from harness import BenchError, Credentials, run_command
from report import Comparison, publish_verdict
from run import (
    BUSY_BEFORE,
    DEFAULT_PGURL,
    REPO,
    SEGMENT_ID,
    SERVICE_COMMAND,
    TENANT,
    Log,
    StartedService,
    create_segment,
    machine_busy_now,
    measure_bulk,
    migrated_database,
    start_service,
    wait_until_serving,
)

REPORT_PATH = Path(__file__).resolve().parent / "reports" / "events-latest.md"
BULK_TARGET = 0.80  # bulk upsert rows/s with events, against without
WATCH_TARGET = 5_000.0  # events/s to one WatchEvents stream
HEADER = ["Measure", "Value", "Compared with", "Its value", "Ratio", "Target", "Verdict"]
ON, OFF = "events on", "events off"
ITEMS_PER_MESSAGE = 1000
ARRIVAL_TIMEOUT_S = 120.0
LIVE_LIMIT_S = 1.0  # a live event reaches a watcher within 1 s, on both databases
LIVE_PAUSE_S = 0.01  # between two single writes: each is alone, not a load


def bulk_rates(
    log: Log,
    services: dict[str, StartedService],
    credentials: Credentials,
    rows: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Insert and update rows/s of each server per round (keys of a round are its own)."""
    rates: dict[str, list[float]] = {}
    labels = list(services)
    for number in range(rounds):
        turn = number % len(labels)
        for label in labels[turn:] + labels[:turn]:
            service = services[label]
            figures = measure_bulk(
                log,
                service.server,
                service.grpc_port,
                credentials,
                f"{label}: BulkUpsertAssignments, round {number + 1}",
                rpc="bulk",
                rows=rows,
                items_per_message=ITEMS_PER_MESSAGE,
                key_prefix=f"r{number}-",
            )
            rates.setdefault(label, []).extend(figure.per_second for figure in figures)
    return rates


def _stream(port: int, credentials: Credentials, after: int) -> Iterator[events_pb2.Event]:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    call = events_pb2_grpc.EventServiceStub(channel).WatchEvents(
        events_pb2.WatchEventsRequest(tenant=TENANT, after_sequence=after),
        metadata=credentials.metadata,
    )
    try:
        for answer in call:
            yield answer.event
    finally:
        call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
        channel.close()


def watch_rate(log: Log, service: StartedService, credentials: Credentials, count: int) -> float:
    """Events/s of one stream reading `count` stored events from the start, in order."""
    started = time.perf_counter()
    expected = 1
    for event in _stream(service.grpc_port, credentials, 0):
        if event.sequence != expected:
            raise BenchError(f"WatchEvents: sequence {event.sequence} where {expected} was due")
        if expected == count:
            break
        expected += 1
    rate = count / (time.perf_counter() - started)
    log.passed(f"WatchEvents read {count:,} stored events in sequence order, no gap")
    return rate


def arrival_delays(
    log: Log, service: StartedService, credentials: Credentials, after: int, rows: int
) -> list[float]:
    """Seconds from each event's occurred_at to its arrival at a live stream, for `rows`
    events written by one more bulk insert."""
    delays: list[float] = []
    failure: list[BaseException] = []
    ready = threading.Event()

    def watch() -> None:
        try:
            stream = _stream(service.grpc_port, credentials, after)
            ready.set()
            for event in stream:
                delays.append(time.time() - event.occurred_at.ToMicroseconds() / 1e6)
                if len(delays) == rows:
                    return
        except BaseException as error:  # reported in the main thread
            failure.append(error)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(10)
    time.sleep(0.5)  # the stream is open and waits for live events
    measure_bulk(
        log,
        service.server,
        service.grpc_port,
        credentials,
        f"{ON}: live bulk insert",
        rpc="bulk",
        rows=rows,
        items_per_message=ITEMS_PER_MESSAGE,
        key_prefix="live-",
        phases=("insert",),
    )
    watcher.join(ARRIVAL_TIMEOUT_S)
    if failure:
        raise BenchError(f"the live stream failed: {failure[0]}")
    if len(delays) != rows:
        raise BenchError(f"the live stream received {len(delays):,} of {rows:,} events")
    log.passed(f"a live WatchEvents stream received all {rows:,} events of the bulk insert")
    return delays


def single_write_delays(
    log: Log, label: str, service: StartedService, credentials: Credentials, after: int, writes: int
) -> list[float]:
    """Seconds from the start of each of `writes` UpsertAssignment calls, made one at a time,
    to the arrival of its event at a stream watching live from `after` (the newest sequence).
    One more write first, not counted, shows that the stream is live."""
    started: dict[str, float] = {}
    arrived: dict[str, float] = {}
    failure: list[BaseException] = []
    customers = [f"alone-{label.split()[0]}-{number}" for number in range(writes + 1)]

    def watch() -> None:
        try:
            for event in _stream(service.grpc_port, credentials, after):
                customer = json.loads(event.payload_json)["customer"]["id"]
                arrived[customer] = time.perf_counter()
                if len(arrived) == len(customers):
                    return
        except BaseException as error:  # reported in the main thread
            failure.append(error)

    def wait_for(customer: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while customer not in arrived and not failure and time.monotonic() < deadline:
            time.sleep(0.001)
        if failure:
            raise BenchError(f"{label}: the live stream failed: {failure[0]}")
        if customer not in arrived:
            raise BenchError(f"{label}: the event of {customer} did not arrive in {timeout} s")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
        for number, customer in enumerate(customers):
            request = assignment_pb2.UpsertAssignmentRequest(
                tenant=TENANT, segment_id=SEGMENT_ID, customer_id=customer
            )
            started[customer] = time.perf_counter()
            stub.UpsertAssignment(request, timeout=10, metadata=credentials.metadata)
            if number == 0:
                wait_for(customer, 30.0)  # the stream is open and live
            time.sleep(LIVE_PAUSE_S)
    wait_for(customers[-1], 30.0)
    watcher.join(10)
    missing = [customer for customer in customers if customer not in arrived]
    if missing:
        raise BenchError(f"{label}: {len(missing)} of {writes} single writes' events missing")
    log.passed(f"{label}: a live stream received the events of all {writes} single writes")
    return [arrived[customer] - started[customer] for customer in customers[1:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="bulk runs per server")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per bulk phase")
    parser.add_argument(
        "--live-writes", type=int, default=200, help="single writes timed to arrival, per database"
    )
    arguments = parser.parse_args()
    if arguments.rounds < 1 or arguments.rows < ITEMS_PER_MESSAGE or arguments.live_writes < 2:
        parser.error(
            f"--rounds must be at least 1, --rows at least {ITEMS_PER_MESSAGE} "
            "and --live-writes at least 2"
        )
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    notes: list[str] = []
    try:
        busy_before = machine_busy_now()
        credentials = Credentials.for_tenant(TENANT)
        with tempfile.TemporaryDirectory(prefix="cs-eventsbench-") as work, ExitStack() as stack:

            def serving(
                name: str, database_url: str | None, flags: tuple[str, ...]
            ) -> StartedService:
                """A server with the benchmark's segment (a new PostgreSQL database unless
                `database_url` is given)."""
                service = start_service(
                    stack,
                    log,
                    pg_url,
                    "cs_eventsbench",
                    Path(work),
                    1,
                    credentials,
                    database_url,
                    name=name,
                    extra_args=flags,
                )
                wait_until_serving(service.server, service.grpc_port)
                with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                    create_segment(channel, credentials)
                return service

            services = {
                label: serving(f"serve-{label.replace(' ', '-')}", None, flags)
                for label, flags in ((ON, ()), (OFF, ("--no-events",)))
            }
            rates = bulk_rates(log, services, credentials, arguments.rows, arguments.rounds)
            # segment-created, then two events per row and round (insert, update).
            stored = 1 + 2 * arguments.rows * arguments.rounds
            watched = watch_rate(log, services[ON], credentials, stored)
            delays = arrival_delays(log, services[ON], credentials, stored, arguments.rows)
            alone = {
                "PostgreSQL": single_write_delays(
                    log,
                    "PostgreSQL",
                    services[ON],
                    credentials,
                    stored + arguments.rows,
                    arguments.live_writes,
                )
            }
            sqlite_url = f"sqlite:///{Path(work) / 'events.db'}"
            run_command([SERVICE_COMMAND, "migrate", "--database-url", sqlite_url], timeout=120)
            embedded = serving("serve-sqlite", sqlite_url, ())
            # after the segment-created event, sequence 1
            alone["SQLite"] = single_write_delays(
                log, "SQLite", embedded, credentials, 1, arguments.live_writes
            )
            log.step("webhooks: deliveries of a backlog, then live events (bench/webhooks.py)")
            hooks_database = migrated_database(stack, pg_url, "cs_eventsbench_hooks", log)
            hooks = asyncio.run(webhooks.measure_webhooks(hooks_database))
    except (BenchError, grpc.RpcError) as error:
        print(f"[bench] FAILED: {error}", file=sys.stderr)
        return 1
    percentiles = quantiles(delays, n=100)
    rows = [
        Comparison(
            "bulk upsert, events on",
            "rows/s",
            median(rates[ON]),
            OFF,
            median(rates[OFF]),
            BULK_TARGET,
        ),
        Comparison("WatchEvents, one stream", "events/s", watched, "target", WATCH_TARGET, 1.0),
        Comparison("commit to arrival, p50", "ms", percentiles[49] * 1000, "-", 0, None),
        Comparison("commit to arrival, p99", "ms", percentiles[98] * 1000, "-", 0, None),
        *(
            Comparison(
                f"a write alone to arrival, {database}, {name}",
                "ms",
                quantiles(figures, n=100)[index] * 1000,
                "limit",
                LIVE_LIMIT_S * 1000,
                1.0 if name == "p99" else None,
                at_most=True,
            )
            for database, figures in alone.items()
            for name, index in (("p50", 49), ("p99", 98))
        ),
        Comparison(
            f"webhook deliveries ({hooks.endpoints} endpoints)",
            "deliveries/s",
            hooks.deliveries_per_second,
            "target",
            webhooks.TARGET_PER_SECOND,
            1.0,
        ),
        Comparison("webhook commit to arrival, p50", "ms", hooks.delay_p50_ms, "-", 0, None),
        Comparison("webhook commit to arrival, p99", "ms", hooks.delay_p99_ms, "-", 0, None),
    ]
    notes.append(
        "bulk rows/s of each phase (insert, update) and round: "
        + "; ".join(f"{label} " + ", ".join(f"{r:,.0f}" for r in rates[label]) for label in rates)
    )
    notes.append(
        "commit to arrival is measured from the event's occurred_at, taken when its chunk's "
        "transaction starts: it includes the chunk's write, and the stream reads more slowly "
        "than the bulk writes"
    )
    notes.append(
        f"a write alone: {arguments.live_writes} UpsertAssignment calls one at a time, "
        f"{LIVE_PAUSE_S * 1000:.0f} ms apart, each timed from its call's start to its event's "
        "arrival at a live stream (PostgreSQL: LISTEN/NOTIFY; SQLite: the notifier's poll)"
    )
    if busy_before > BUSY_BEFORE:
        notes.insert(0, f"{busy_before:.2f} cores were busy before the run: something else ran")
    facts = [
        ("Date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Command", "`" + " ".join([".venv/bin/python bench/events.py", *sys.argv[1:]]) + "`"),
        ("Machine", f"{os.cpu_count()} CPUs; {busy_before:.2f} cores busy in the second before"),
        (
            "Load",
            f"BulkUpsertAssignments, {arguments.rows:,} rows per phase, {ITEMS_PER_MESSAGE} "
            f"items per message, {arguments.rounds} rounds, medians",
        ),
    ]
    title = "Benchmark: change events (outbox cost, WatchEvents, webhooks)"
    return publish_verdict(REPORT_PATH, title, rows, facts, log.checks, notes, HEADER, REPO)


if __name__ == "__main__":
    sys.exit(main())
