"""Search on a segment of a million assignments, through the real gRPC service on PostgreSQL.

1. A fresh database cs_searchbench_<random>, `customer-segments migrate`, one segment
   (CreateSegment) and --rows assignments (default 1,000,000) written straight into the table by
   one INSERT ... SELECT over generate_series (the service's own bulk path is measured by
   bench/run.py; here only the reads matter). 20% are B2B over 5,000 legal entities, every 10th
   is AUTOMATIC, mixins hold {"tier": gold|silver|bronze, "score": 0..999, "externalId": unique}.
   Then VACUUM ANALYZE.
2. `customer-segments serve` (1 worker) on that database; every figure below is the latency
   of ListAssignments calls through a Python gRPC stub (median and p95 of --repeat calls after
   a warm-up): the first page; a cursor page at depth 900,000 (its page token taken from the
   offset page just before it); the offset page at the same depth, for comparison;
   `q=customerId:X`; `q=mixins.externalId:X` (one match among a million: the GIN index);
   `q=mixins.tier:gold legalEntityId:exists` and a descending sort by modification time; and
   X-Total-Count (include_total_count) of the whole segment.
3. The EXPLAIN (ANALYZE, BUFFERS) of each query: the statements the service's own code builds,
   captured in this process from the same use case and run with the same parameters.
4. bench/reports/search-latest.md: the figures, the targets (cursor at depth within 2x of the
   first page; customerId and mixins equality under 20 ms median; the total under 500 ms), and
   the plans. The server is stopped and the database dropped, failure or not.

Usage: .venv/bin/python bench/search.py [--rows N] [--repeat N]. PostgreSQL from env PGURL
(default postgresql://postgres@127.0.0.1:5432/test). Exit status 1 when a step fails or a
target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc
from harness import Credentials, run_sql
from run import (
    DEFAULT_PGURL,
    SEGMENT_ID,
    TENANT,
    Log,
    create_segment,
    start_service,
    wait_until_serving,
)
from sqlalchemy import event
from sqlalchemy.engine import Engine

from customer_segments.domain.listing import Page
from customer_segments.domain.principal import Principal, Scope
from customer_segments.services.assignments import list_assignments
from customer_segments.store.database import Database
from customer_segments.store.store import Store

BENCH_DIR = Path(__file__).resolve().parent
REPORT_PATH = BENCH_DIR / "reports" / "search-latest.md"
PAGE_SIZE = 60
DEPTH = 900_000

LOAD_SQL = """
INSERT INTO customer_assignments (tenant, segment_id, customer_id, legal_entity_id,
    assignment_type, mixins, metadata_mixins, version, created_at, modified_at)
SELECT '{tenant}', '{segment}', 'cust-' || lpad(n::text, 7, '0'),
    CASE WHEN n % 5 = 0 THEN 'le-' || (n % 5000) ELSE '' END,
    CASE WHEN n % 10 = 0 THEN 'AUTOMATIC' ELSE 'MANUAL' END,
    jsonb_build_object('tier', (ARRAY['gold', 'silver', 'bronze'])[n % 3 + 1],
                       'score', n % 1000, 'externalId', 'ext-' || n),
    '{{}}'::jsonb, 1,
    timestamptz '2026-01-01 00:00:00+00' + n * interval '1 second',
    timestamptz '2026-01-01 00:00:00+00' + n * interval '1 second' + (n % 97) * interval '1 hour'
FROM generate_series(1, {rows}) AS n
"""


@dataclass(frozen=True)
class Case:
    label: str
    request: dict[str, Any]  # ListAssignmentsRequest fields besides tenant and segment_id
    target_ms: float | None = None  # on the median


@dataclass(frozen=True)
class Figure:
    case: Case
    median_ms: float
    p95_ms: float
    returned: int
    total_count: int | None


def query_case(q: str, target_ms: float | None = None) -> Case:
    return Case(f"q={q}", {"q": q}, target_ms)


def load(pg_url: str, database_url: str, rows: int) -> float:
    started = time.perf_counter()
    run_sql(database_url, LOAD_SQL.format(tenant=TENANT, segment=SEGMENT_ID, rows=rows))
    run_sql(database_url, "VACUUM ANALYZE customer_assignments")
    return time.perf_counter() - started


def measure(stub: Any, case: Case, repeat: int, credentials: Credentials) -> Figure:
    request = assignment_pb2.ListAssignmentsRequest(
        tenant=TENANT, segment_id=SEGMENT_ID, **case.request
    )
    metadata = credentials.metadata
    # Warm-up, and the answer checked.
    answer = stub.ListAssignments(request, timeout=60, metadata=metadata)
    latencies = []
    for _ in range(repeat):
        started = time.perf_counter()
        stub.ListAssignments(request, timeout=60, metadata=metadata)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return Figure(
        case,
        statistics.median(latencies),
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))],
        len(answer.assignments),
        answer.total_count if case.request.get("include_total_count") else None,
    )


def explain_all(database_url: str, cases: list[Case]) -> dict[str, str]:
    """Each case's statements as the service builds them, under EXPLAIN (ANALYZE, BUFFERS)."""

    async def go() -> dict[str, str]:
        store = Store(Database(database_url, pool_size=2))
        captured: list[tuple[str, Any]] = []

        def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "customer_assignments" in (
                statement
            ):
                captured.append((statement, parameters))

        event.listen(Engine, "before_cursor_execute", capture)
        plans: dict[str, str] = {}
        try:
            for case in cases:
                captured.clear()
                request = case.request
                await list_assignments(
                    store,
                    Principal(TENANT, frozenset({Scope.READ.value})),
                    TENANT,
                    SEGMENT_ID,
                    q=request.get("q", ""),
                    sort=request.get("sort", ""),
                    page=Page(request.get("page_number", 1), request.get("page_size", 60)),
                    page_token=request.get("page_token", ""),
                    include_total_count=request.get("include_total_count", False),
                )
                outputs = []
                async with store.read() as connection:
                    for statement, parameters in list(captured):
                        result = await connection.exec_driver_sql(
                            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                        )
                        plan = "\n".join(row[0] for row in result)
                        outputs.append(f"{statement.strip()}\n\n{plan}")
                plans[case.label] = "\n\n".join(outputs)
        finally:
            event.remove(Engine, "before_cursor_execute", capture)
            await store.close()
        return plans

    return asyncio.run(go())


def report(
    figures: list[Figure],
    plans: dict[str, str],
    rows: int,
    load_s: float,
    checks: list[tuple[str, bool]],
) -> str:
    lines = [
        "# Search on a segment of a million assignments",
        "",
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} "
        f"cores, PostgreSQL at $PGURL; {rows:,} assignments in one segment, loaded and "
        f"VACUUM ANALYZEd in {load_s:.0f} s. Latencies of ListAssignments through the gRPC "
        "service (1 worker), Python stub, page size 60 unless said otherwise.",
        "",
        "| query | median ms | p95 ms | rows | total | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for figure in figures:
        target = f"< {figure.case.target_ms:.0f} ms" if figure.case.target_ms else ""
        total = f"{figure.total_count:,}" if figure.total_count is not None else ""
        lines.append(
            f"| {figure.case.label} | {figure.median_ms:.2f} | {figure.p95_ms:.2f} | "
            f"{figure.returned} | {total} | {target} |"
        )
    lines += ["", "## Checks", ""]
    lines += [f"- {'PASS' if passed else 'FAIL'}: {text}" for text, passed in checks]
    lines += ["", "## Plans (EXPLAIN ANALYZE, BUFFERS) of the statements the service runs", ""]
    for label, plan in plans.items():
        lines += [f"### {label}", "", "```", plan, "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per query")
    arguments = parser.parse_args()
    rows, repeat = arguments.rows, arguments.repeat
    depth = min(DEPTH, rows - PAGE_SIZE * 2)
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    work = Path(tempfile.mkdtemp(prefix="search-bench-"))  # the server's log
    log = Log()
    with ExitStack() as stack:
        credentials = Credentials.for_tenant(TENANT)
        service = start_service(stack, log, pg_url, "cs_searchbench", work, 1, credentials)
        server, grpc_port, database_url = service.server, service.grpc_port, service.database_url
        wait_until_serving(server, grpc_port)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            create_segment(channel, credentials)
            log.step(f"loading {rows:,} assignments")
            load_s = load(pg_url, database_url, rows)
            log.step(f"loaded in {load_s:.0f} s")
            stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
            # The page token of the page at depth: the next token of the offset page before it.
            before = stub.ListAssignments(
                assignment_pb2.ListAssignmentsRequest(
                    tenant=TENANT,
                    segment_id=SEGMENT_ID,
                    page_size=PAGE_SIZE,
                    page_number=depth // PAGE_SIZE,
                ),
                timeout=120,
                metadata=credentials.metadata,
            )
            token = before.next_page_token
            middle = rows // 2
            cases = [
                Case("first page", {"page_size": PAGE_SIZE}),
                Case(
                    f"cursor page at depth {depth:,}", {"page_size": PAGE_SIZE, "page_token": token}
                ),
                Case(
                    f"offset page at depth {depth:,} (pageNumber {depth // PAGE_SIZE + 1})",
                    {"page_size": PAGE_SIZE, "page_number": depth // PAGE_SIZE + 1},
                ),
                Case(f"q=customerId:cust-{middle:07d}", {"q": f"customerId:cust-{middle:07d}"}, 20),
                Case(
                    f"q=mixins.externalId:ext-{middle}",
                    {"q": f"mixins.externalId:ext-{middle}"},
                    20,
                ),
                Case(
                    "q=mixins.tier:gold legalEntityId:exists",
                    {"q": "mixins.tier:gold legalEntityId:exists"},
                ),
                Case("sort=metadata.modifiedAt:desc", {"sort": "metadata.modifiedAt:desc"}),
                Case(
                    "X-Total-Count of the whole segment (page size 1)",
                    {"page_size": 1, "include_total_count": True},
                    500,
                ),
            ]
            figures = []
            for case in cases:
                figures.append(
                    measure(stub, case, repeat if "offset" not in case.label else 5, credentials)
                )
                log.step(f"{case.label}: median {figures[-1].median_ms:.2f} ms")
        log.step("EXPLAIN ANALYZE of each query")
        plans = explain_all(database_url, cases)

    first, cursor, offset = figures[0], figures[1], figures[2]
    checks: list[tuple[str, bool]] = [
        (
            f"cursor page at depth {depth:,} ({cursor.median_ms:.2f} ms) within 2x of the first "
            f"page ({first.median_ms:.2f} ms); offset paging at the same depth: "
            f"{offset.median_ms:.2f} ms",
            cursor.median_ms <= 2 * first.median_ms,
        ),
        (
            f"{cursor.returned} rows on the cursor page, as on the first",
            cursor.returned == first.returned == PAGE_SIZE,
        ),
        ("the total counts every row", figures[-1].total_count == rows),
    ]
    for figure in figures:
        if figure.case.target_ms is not None:
            checks.append(
                (
                    f"{figure.case.label}: median {figure.median_ms:.2f} ms "
                    f"< {figure.case.target_ms:.0f} ms",
                    figure.median_ms < figure.case.target_ms,
                )
            )
    REPORT_PATH.write_text(report(figures, plans, rows, load_s, checks))
    log.step(f"wrote {REPORT_PATH.relative_to(BENCH_DIR.parent)}")
    for text, passed in checks:
        log.step(f"{'PASS' if passed else 'FAIL'}: {text}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
