"""Writes while 40 callers run slow regular-expression searches, on SQLite and PostgreSQL.

Callers with read scope only must not be able to stop writes: a `q` with a regular
expression scans the whole segment, and such reads queue for a few connections of their
own (--db-expensive-read-pool-size, default 2) instead of taking the ones writes need.

For each database (an SQLite file in a temporary folder; a fresh PostgreSQL database
cs_slowreads_<random>, dropped afterwards):
1. `customer-segments serve` (1 worker, default pool sizes) on it, one segment, --rows
   assignments written through BulkUpsertAssignments.
2. Writes alone: --writers concurrent callers, each an UpsertAssignment loop, for --seconds.
3. The same writes while --readers callers each loop ListAssignments with
   `q=customerId:~<regex that matches nothing>`: every search scans the segment.
4. Writes per second in 3 as a share of 2: the target is at least 50%. Searches answered,
   and how (answers, 400 when one ran past its 5 s limit, 503 when it waited too long for a
   connection), are reported beside it.

Usage: .venv/bin/python bench/slow_reads.py [--rows N] [--seconds S] [--readers N]
[--writers N] [--databases sqlite,postgresql]. PostgreSQL from env PGURL (default
postgresql://postgres@127.0.0.1:5432/test). Writes bench/reports/slow-reads-latest.md;
exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc
from harness import Credentials, run_command
from run import (
    DEFAULT_PGURL,
    SEGMENT_ID,
    SERVICE_COMMAND,
    TENANT,
    Log,
    create_segment,
    start_service,
    wait_until_serving,
)

BENCH_DIR = Path(__file__).resolve().parent
REPORT_PATH = BENCH_DIR / "reports" / "slow-reads-latest.md"
TARGET = 0.50
# Matches no customer id ("cust-0000042"): the search reads every row of the segment.
SLOW_Q = "customerId:~(1|2|3)x+(4|5)$"
BULK_ITEMS = 1000


@dataclass
class Phase:
    writes: int = 0
    write_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    searches: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def writes_per_second(self) -> float:
        return self.writes / self.seconds


@dataclass(frozen=True)
class Result:
    database: str
    alone: list[Phase]
    with_searches: list[Phase]

    @property
    def alone_rate(self) -> float:
        return statistics.median(p.writes_per_second for p in self.alone)

    @property
    def with_searches_rate(self) -> float:
        return statistics.median(p.writes_per_second for p in self.with_searches)

    @property
    def share(self) -> float:
        return self.with_searches_rate / self.alone_rate

    def searches(self) -> collections.Counter[str]:
        return sum((p.searches for p in self.with_searches), collections.Counter())

    def write_errors(self) -> collections.Counter[str]:
        return sum((p.write_errors for p in self.alone + self.with_searches), collections.Counter())


async def seed(target: str, credentials: Credentials, rows: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
        for start in range(0, rows, BULK_ITEMS):
            items = [
                assignment_pb2.BulkUpsertItem(customer_id=f"cust-{n:07d}")
                for n in range(start, min(rows, start + BULK_ITEMS))
            ]
            request = assignment_pb2.BulkUpsertAssignmentsRequest(
                tenant=TENANT, segment_id=SEGMENT_ID, items=items
            )
            async for chunk in stub.BulkUpsertAssignments(
                request, timeout=120, metadata=credentials.metadata
            ):
                if any(result.code != 201 for result in chunk.results):
                    raise RuntimeError(f"seeding failed: {chunk.results[0]}")


async def phase(
    target: str, credentials: Credentials, seconds: float, writers: int, readers: int, name: str
) -> Phase:
    measured = Phase()
    metadata = credentials.metadata
    started = time.perf_counter()
    deadline = started + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)

        async def write(writer: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                request = assignment_pb2.UpsertAssignmentRequest(
                    tenant=TENANT,
                    segment_id=SEGMENT_ID,
                    customer_id=f"w-{name}-{writer}-{n}",
                    mixins_json=f'{{"n": {n}}}',
                )
                n += 1
                try:
                    await stub.UpsertAssignment(request, timeout=30, metadata=metadata)
                except grpc.aio.AioRpcError as error:
                    measured.write_errors[error.code().name] += 1
                else:
                    measured.writes += 1

        async def search() -> None:
            request = assignment_pb2.ListAssignmentsRequest(
                tenant=TENANT, segment_id=SEGMENT_ID, q=SLOW_Q, page_size=60
            )
            while time.perf_counter() < deadline:
                try:
                    await stub.ListAssignments(request, timeout=60, metadata=metadata)
                except grpc.aio.AioRpcError as error:
                    measured.searches[error.code().name] += 1
                else:
                    measured.searches["OK"] += 1

        readers_running = [asyncio.create_task(search()) for _ in range(readers)]
        if readers:
            await asyncio.sleep(1.0)  # every reader has a search running or waiting
            started = time.perf_counter()
            deadline = started + seconds
        await asyncio.gather(*(write(n) for n in range(writers)))
        measured.seconds = time.perf_counter() - started
        for task in readers_running:
            task.cancel()
        await asyncio.gather(*readers_running, return_exceptions=True)
    return measured


def run_database(
    database: str, arguments: argparse.Namespace, log: Log, pg_url: str, work: Path
) -> Result:
    credentials = Credentials.for_tenant(TENANT)
    with ExitStack() as stack:
        database_url = None
        if database == "sqlite":
            database_url = f"sqlite:///{work / 'slow-reads.db'}"
            run_command([SERVICE_COMMAND, "migrate", "--database-url", database_url], 120)
        service = start_service(
            stack, log, pg_url, "cs_slowreads", work, 1, credentials, database_url
        )
        wait_until_serving(service.server, service.grpc_port)
        target = f"127.0.0.1:{service.grpc_port}"
        with grpc.insecure_channel(target) as channel:
            create_segment(channel, credentials)
        log.step(f"{database}: seeding {arguments.rows:,} assignments")
        asyncio.run(seed(target, credentials, arguments.rows))
        runs: dict[str, list[Phase]] = {"alone": [], "with-searches": []}
        # Alternated, so that the machine's other load weighs on both alike.
        for round_ in range(arguments.rounds):
            for name, readers in (("alone", 0), ("with-searches", arguments.readers)):
                measured = asyncio.run(
                    phase(
                        target,
                        credentials,
                        arguments.seconds,
                        arguments.writers,
                        readers,
                        f"{name}-{round_}",
                    )
                )
                log.step(
                    f"{database}, {name}: {measured.writes_per_second:,.0f} writes/s, "
                    f"write errors {dict(measured.write_errors)}, "
                    f"searches {dict(measured.searches)}"
                )
                runs[name].append(measured)
    return Result(database, runs["alone"], runs["with-searches"])


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(results: list[Result], arguments: argparse.Namespace) -> str:
    lines = [
        "# Writes while callers run slow regular-expression searches",
        "",
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} "
        f"cores at commit {commit()}: `customer-segments serve` (1 worker, default pools), "
        f"{arguments.rows:,} assignments in the segment, {arguments.writers} writers "
        f"(UpsertAssignment loops) for {arguments.seconds:.0f} s, alone and beside "
        f"{arguments.readers} readers looping ListAssignments with `q={SLOW_Q}` (a full scan).",
        "",
        "| database | writes/s alone | writes/s with searches | share | target | searches "
        "answered (400 = past 5 s, UNAVAILABLE = no connection within 30 s) | write errors |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for result in results:
        met = "met" if result.share >= TARGET else "**missed**"
        searches = ", ".join(f"{k} {v}" for k, v in sorted(result.searches().items()))
        errors = dict(result.write_errors()) or "none"
        lines.append(
            f"| {result.database} | {result.alone_rate:,.0f} | "
            f"{result.with_searches_rate:,.0f} | {result.share:.0%} | "
            f">= {TARGET:.0%}: {met} | {searches} | {errors} |"
        )
    lines += [
        "",
        f"Medians of {arguments.rounds} rounds, each writes alone then writes with searches "
        "(alternated, so that the machine's other load weighs on both alike). Every round:",
        "",
    ]
    for result in results:
        pairs = zip(result.alone, result.with_searches, strict=True)
        rounds = "; ".join(
            f"{a.writes_per_second:,.0f} / {w.writes_per_second:,.0f}" for a, w in pairs
        )
        lines.append(f"- {result.database}: {rounds} writes/s")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--readers", type=int, default=40)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    arguments = parser.parse_args()
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    results = []
    with tempfile.TemporaryDirectory(prefix="slow-reads-") as work:
        for database in arguments.databases.split(","):
            results.append(run_database(database, arguments, log, pg_url, Path(work)))
    REPORT_PATH.write_text(report(results, arguments))
    log.step(f"wrote {REPORT_PATH.relative_to(BENCH_DIR.parent)}")
    for result in results:
        log.step(f"{result.database}: writes kept {result.share:.0%} of their rate")
    return 0 if all(result.share >= TARGET for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
