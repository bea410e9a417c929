"""The hot paths beside their limits, in one run: the segments of a customer, GetAssignment,
REST GET and bulk upserts; latency at 80% of the maximum; memory over a long mixed load.

1. Limits, in the same run: the gRPC + one asyncpg read ceiling (bench/ceiling/grpc_ceiling.py
   pg, driven by h2load as its run.sh does), measured in turns with the service's reads (each
   warmed up by one uncounted round first, see `interleaved`), and the service's own bulk
   statements on its own schema, bare from asyncpg (bench/schema_ceiling.py), measured in
   turns with the service's bulk upserts (--bulk-rounds after one uncounted warm-up turn;
   the medians count).
2. `customer-segments serve --workers 1` on a fresh PostgreSQL database: 20 segments (the
   first 5 and every third of the others ACTIVE), --preload assignments in the first, and the
   customer the reads ask for assigned to 5 of the 20. Then:
   - ListSegments with customer_id (the segments of a customer: 5 answers) and GetAssignment,
     each under the ceiling's h2load load, against the ceiling;
   - REST GET of one assignment (wrk, as the REST ceiling is driven) against the service's own
     gRPC GetAssignment figure of this run;
   - BulkUpsertAssignments (1000 items per request) and StreamUpsertAssignments (200 per
     message), inserts then updates, against the bare statements;
   - p50 and p99 latency of GetAssignment and of the segments of a customer at 80% of the
     throughput just measured (h2load --rps, every request's time from its --log-file);
   - resident memory of every process of the service after the steps above, then after
     --soak-seconds (default 600) of mixed load: both reads, REST GETs and a loop of bulk
     upserts at once. Flat: each process grows by at most 10% and 16 MiB.
3. The table, also written to bench/reports/hot-paths-latest.md.

Usage: make bench-hot-paths, or .venv/bin/python bench/hot_paths.py [--help]. PostgreSQL from
env PGURL (default postgresql://postgres@127.0.0.1:5432/test). Extra serve flags in env
BENCH_SERVE_ARGS. Exit status 1 when a step fails or a check does not hold; a missed target is
reported, not an error.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, segment_pb2, segment_pb2_grpc
from gateway import fetch_assignment, measure_wrk, require_wrk
from harness import (
    BenchError,
    Child,
    Credentials,
    _process_tree,
    free_port,
    grpc_frame,
    port_accepts,
    require_h2load,
    run_command,
    run_sql,
    wait_until,
)
from report import Comparison, publish
from run import (
    BENCH_DIR,
    CEILING_FILL_SQL,
    DEFAULT_PGURL,
    GET_CUSTOMER,
    PYTHON,
    REPO,
    SEGMENT_ID,
    TENANT,
    Log,
    StartedService,
    Throughput,
    context,
    create_segment,
    get_assignment,
    load_echo_stubs,
    machine_busy_now,
    measure_bulk,
    measure_schema_ceiling,
    measure_unary,
    start_service,
    wait_until_serving,
)

REPORT_PATH = BENCH_DIR / "reports" / "hot-paths-latest.md"
SEGMENTS = 20
CUSTOMER_SEGMENTS = 5  # of SEGMENTS, the reads' customer is assigned to this many
TARGETS = {"segments": 0.75, "get": 0.90, "rest": 0.80, "bulk": 0.75}
LATENCY_LOAD = 0.80  # of the throughput measured
LATENCY_SECONDS = 10
H2LOAD_CLIENTS = 16  # as H2LOAD_ARGS
MEMORY_GROWTH = 0.10  # at most, per process, and at most MEMORY_SLACK_BYTES
MEMORY_SLACK_BYTES = 16 * 2**20
GET_METHOD = "customersegment.v1.CustomerAssignmentService/GetAssignment"
LIST_METHOD = "customersegment.v1.SegmentService/ListSegments"


@dataclass(frozen=True)
class Latency:
    requests: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class UnaryCall:
    """A gRPC call h2load can replay: its URL, request body file and answer size."""

    url: str
    body: Path
    response_bytes: int


def segment_ids() -> list[str]:
    return [SEGMENT_ID, *(f"seg-{n:02d}" for n in range(1, SEGMENTS))]


def create_segments(channel: grpc.Channel, credentials: Credentials) -> None:
    """SEGMENT_ID (by run.create_segment) and SEGMENTS - 1 more, some of them inactive: the
    segments of a customer, as an internal caller asks, are listed whatever their status."""
    create_segment(channel, credentials)
    stub = segment_pb2_grpc.SegmentServiceStub(channel)
    for n, segment_id in enumerate(segment_ids()[1:], start=1):
        active = n < CUSTOMER_SEGMENTS or n % 3 == 0
        status = (
            segment_pb2.SEGMENT_STATUS_ACTIVE if active else segment_pb2.SEGMENT_STATUS_INACTIVE
        )
        segment = segment_pb2.Segment(
            id=segment_id, name={"en": f"Segment {n}"}, site_code="main", status=status
        )
        request = segment_pb2.CreateSegmentRequest(tenant=TENANT, segment=segment)
        stub.CreateSegment(request, timeout=10, metadata=credentials.metadata)


def assign_customer(channel: grpc.Channel, credentials: Credentials) -> None:
    """GET_CUSTOMER (preloaded in SEGMENT_ID) into CUSTOMER_SEGMENTS - 1 more segments."""
    stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
    for segment_id in segment_ids()[1:CUSTOMER_SEGMENTS]:
        request = assignment_pb2.UpsertAssignmentRequest(
            tenant=TENANT, segment_id=segment_id, customer_id=GET_CUSTOMER
        )
        stub.UpsertAssignment(request, timeout=10, metadata=credentials.metadata)


def segments_of_customer(
    channel: grpc.Channel, request: segment_pb2.ListSegmentsRequest, credentials: Credentials
) -> segment_pb2.ListSegmentsResponse:
    stub = segment_pb2_grpc.SegmentServiceStub(channel)
    answer = stub.ListSegments(request, timeout=10, metadata=credentials.metadata)
    found = sorted(segment.id for segment in answer.segments)
    if found != sorted(segment_ids()[:CUSTOMER_SEGMENTS]):
        raise BenchError(f"ListSegments(customer_id={GET_CUSTOMER}) returned {found}")
    return answer


def unary_call(work: Path, port: int, method: str, request: bytes, answer_bytes: int) -> UnaryCall:
    body = work / f"{method.rpartition('/')[2]}-request.bin"
    body.write_bytes(grpc_frame(request))
    return UnaryCall(f"http://127.0.0.1:{port}/{method}", body, answer_bytes)


# --- 1. limits ------------------------------------------------------------------------------


def start_grpc_pg_ceiling(
    stack: ExitStack, log: Log, ceiling_dir: Path, pg_url: str, work: Path
) -> tuple[Child, UnaryCall]:
    """The gRPC + one asyncpg read ceiling, serving until `stack` closes: it is measured in
    turns with the service (see interleaved)."""
    stubs = work / "ceiling-gen"
    echo_pb2, echo_pb2_grpc = load_echo_stubs(ceiling_dir, stubs)
    request = echo_pb2.Req(tenant="acme", segment_id="seg-1", customer_id="cust-42")
    body = work / "ceiling-request.bin"
    body.write_bytes(grpc_frame(request.SerializeToString()))
    log.step("ceiling: filling ceiling_assignments")
    run_sql(pg_url, CEILING_FILL_SQL)
    port = free_port()
    argv = [PYTHON, str(ceiling_dir / "grpc_ceiling.py"), "pg", str(port)]
    server = Child("grpc_ceiling_pg", argv, work, {"CEILING_GEN": str(stubs), "PGURL": pg_url})
    stack.callback(server.stop)
    wait_until(partial(port_accepts, port), f"grpc_ceiling.py pg on {port}", server)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = echo_pb2_grpc.EchoStub(channel).Get(request, timeout=10)
    url = f"http://127.0.0.1:{port}/ceiling.v1.Echo/Get"
    return server, UnaryCall(url, body, answer.ByteSize())


def interleaved(
    log: Log, rounds: int, measures: dict[str, Callable[[], Throughput]]
) -> dict[str, Throughput]:
    """Each of `measures` once unmeasured, then `rounds` times in turns (the first of each
    round rotating); the median of each. Why: a fresh Python server gets faster over its first
    tens of thousands of calls (the ceiling by up to 1.5-2x on this 2-core machine), and the
    machine's speed drifts over minutes; measured one after the other, a ratio mostly showed
    which of the two had warmed up, or when."""
    for name, measure in measures.items():
        log.step(f"{name}: warm-up round, not counted")
        measure()
    figures: dict[str, list[Throughput]] = {name: [] for name in measures}
    names = list(measures)
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            figures[name].append(measures[name]())
    medians = {}
    for name, values in figures.items():
        ordered = sorted(values, key=lambda figure: figure.per_second)
        medians[name] = ordered[len(ordered) // 2]
        rates = ", ".join(f"{figure.per_second:,.0f}" for figure in values)
        log.passed(f"{name}: {rounds} interleaved rounds ({rates} req/s)")
    return medians


def cpu_per_call_us(figure: Throughput) -> float | None:
    """CPU time of the measured server (its process tree) per call, in microseconds."""
    if figure.cpu is None or not figure.per_second:
        return None
    return figure.cpu.process / figure.per_second * 1e6


# --- 2. latency and memory ------------------------------------------------------------------


def h2load_command(call: UnaryCall, authorization: str, *load: str) -> list[str]:
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    headers += ["-H", f"authorization: {authorization}"]
    return [require_h2load(), *load, "-d", str(call.body), *headers, call.url]


def measure_latency(
    log: Log, label: str, call: UnaryCall, authorization: str, rate: float, work: Path
) -> Latency:
    """`rate` calls a second from H2LOAD_CLIENTS connections for LATENCY_SECONDS; the time of
    every request from h2load's log (start in us, status, duration in us)."""
    per_client = max(1, round(rate / H2LOAD_CLIENTS))
    total = per_client * H2LOAD_CLIENTS * LATENCY_SECONDS
    log_file = work / f"latency-{label.replace(' ', '-')}.tsv"
    load = ["-n", str(total), "-c", str(H2LOAD_CLIENTS), "-m", "10", "-t", "1"]
    load += [f"--rps={per_client}", f"--log-file={log_file}"]
    log.step(f"{label}: {per_client * H2LOAD_CLIENTS:,} calls/s for {LATENCY_SECONDS} s")
    run_command(h2load_command(call, authorization, *load), timeout=LATENCY_SECONDS * 6 + 60)
    durations, failed = [], 0
    for line in log_file.read_text().splitlines():
        _, status, micros = line.split("\t")[:3]
        if status != "200":
            failed += 1
        durations.append(int(micros) / 1000)
    if failed or len(durations) != total:
        raise BenchError(f"{label}: {failed} failed of {len(durations)} ({total} sent)")
    cuts = statistics.quantiles(durations, n=100)
    log.passed(f"{label}: {total:,} calls at {per_client * H2LOAD_CLIENTS:,}/s, all status 200")
    return Latency(total, cuts[49], cuts[98])


@dataclass
class BulkTurns:
    """rows/s of each turn: `bare insert`, `BulkUpsert update`, ..."""

    figures: dict[str, list[float]]
    warm_up: dict[str, list[float]]  # the uncounted turn's

    def median(self, name: str) -> float:
        return statistics.median(self.figures[name])

    @property
    def notes(self) -> list[str]:
        return [
            f"bulk turns, {name}: "
            + ", ".join(f"{figure:,.0f}" for figure in figures)
            + f" rows/s (warm-up, not counted: {self.warm_up[name][0]:,.0f})"
            for name, figures in self.figures.items()
        ]


def measure_bulk_in_turns(
    log: Log,
    service: StartedService,
    credentials: Credentials,
    pg_url: str,
    rows: int,
    rounds: int,
) -> BulkTurns:
    """The bare statements (each turn on a new database), then the service's unary and
    streamed upserts (new keys each turn), `rounds` times after one uncounted warm-up turn,
    as the reads are measured: the bare statements' rate moves by half from one run to the
    next on this machine (45,000 to 75,000 rows/s for updates on 2026-12-02), so one
    measurement of it, first, decided a ratio as much as the service did; and in the first
    run measured in turns (at 976216b) the service's first turn, right after the reads, was
    its slowest in all four phases (29,600-32,000 rows/s; then 31,700-42,500; in the next
    run the warm-up turn was not the slowest)."""
    figures: dict[str, list[float]] = {}
    warm_up: dict[str, list[float]] = {}

    def add(label: str, measured: Sequence[Throughput]) -> None:
        for phase, figure in zip(("insert", "update"), measured, strict=True):
            (figures if turn else warm_up).setdefault(f"{label} {phase}", []).append(
                figure.per_second
            )

    bulk = partial(measure_bulk, log, service.server, service.grpc_port, credentials)
    for turn in range(rounds + 1):
        log.step(f"bulk turn {turn} of {rounds}" if turn else "bulk: warm-up turn, not counted")
        add("bare", measure_schema_ceiling(log, pg_url))
        add(
            "BulkUpsert",
            bulk(
                "BulkUpsertAssignments",
                rpc="bulk",
                rows=rows,
                items_per_message=1000,
                key_prefix=f"bulk-unary-{turn}-",
            ),
        )
        add(
            "StreamUpsert",
            bulk(
                "StreamUpsertAssignments",
                rpc="stream",
                rows=rows,
                items_per_message=200,
                key_prefix=f"bulk-stream-{turn}-",
            ),
        )
    return BulkTurns(figures, warm_up)


def resident_memory(pid: int) -> dict[str, int]:
    """Resident bytes of `pid` and each descendant, by a name that says which it is."""
    found = {}
    for member in _process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
            argv = Path(f"/proc/{member}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        name = " ".join(part.decode() for part in argv[1:3] if part) or str(member)
        found[f"{name} ({member})"] = int(rss.split()[1]) * 1024
    return found


def soak(
    log: Log,
    server: Child,
    grpc_port: int,
    calls: dict[str, UnaryCall],
    rest_url: str,
    credentials: Credentials,
    rates: dict[str, float],
    seconds: int,
) -> None:
    """Both reads at a third of their maximum each, REST GETs from 2 connections and a loop of
    bulk upserts, all at once for `seconds`."""
    authorization = credentials.authorization
    commands = [
        h2load_command(
            call,
            authorization,
            *("-D", str(seconds), "-c", "4", "-m", "4", "-t", "1"),
            f"--rps={max(1, round(rates[name] / 3 / 4))}",
        )
        for name, call in calls.items()
    ]
    commands.append(
        [
            require_wrk(),
            "-t1",
            "-c2",
            f"-d{seconds}s",
            "-H",
            f"Authorization: {authorization}",
            rest_url,
        ]
    )
    log.step(f"soak: {seconds} s of mixed load")
    deadline = time.monotonic() + seconds
    failures: list[str] = []

    def upserts() -> None:
        round_number = 0
        while time.monotonic() < deadline and not failures:
            round_number += 1
            try:
                measure_bulk(
                    Log(),
                    server,
                    grpc_port,
                    credentials,
                    "soak upserts",
                    rpc="stream",
                    rows=5_000,
                    items_per_message=200,
                    key_prefix=f"soak-{round_number}-",
                )
            except BenchError as error:
                failures.append(str(error))

    writer = threading.Thread(target=upserts)
    loads = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for argv in commands]
    writer.start()
    outputs = [load.communicate(timeout=seconds + 120)[0] for load in loads]
    writer.join(timeout=600)
    for argv, load, output in zip(commands, loads, outputs, strict=True):
        if load.returncode != 0 or ("0 failed" not in output and "wrk" not in argv[0]):
            failures.append(f"{argv[0]} exit {load.returncode}:\n{output[-2000:]}")
    if failures:
        raise BenchError("soak: " + "\n".join(failures))
    log.passed(f"soak: {seconds} s of mixed load, no call failed")


# --- 3. the report --------------------------------------------------------------------------


def preload(log: Log, service: StartedService, credentials: Credentials, rows: int) -> None:
    """The reads' data: the 20 segments, `rows` assignments in the first (BulkUpsertAssignments)
    and the customer the reads ask for in 5 of the segments; then the statistics."""
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        create_segments(channel, credentials)
        measure_bulk(
            log,
            service.server,
            service.grpc_port,
            credentials,
            "preload (BulkUpsertAssignments)",
            rpc="bulk",
            rows=rows,
            items_per_message=1000,
            key_prefix="cust-",
            phases=("insert",),
        )
        assign_customer(channel, credentials)
    # The statistics autovacuum would have gathered by now (this machine's PostgreSQL runs
    # with autovacuum off): without them the planner reads a customer's segments through the
    # wrong index, ten times slower.
    run_sql(service.database_url, "ANALYZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preload", type=int, default=100_000, help="assignments to preload")
    parser.add_argument("--bulk-rows", type=int, default=50_000, help="rows per bulk phase")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved read rounds, the median counts"
    )
    parser.add_argument("--soak-seconds", type=int, default=600, help="0: no memory check")
    parser.add_argument("--skip-bulk", action="store_true", help="reads only")
    parser.add_argument(
        "--bulk-rounds", type=int, default=3, help="bulk turns (bare, unary, stream); medians"
    )
    arguments = parser.parse_args()
    ceiling_dir = Path(os.environ.get("CEILING_DIR", REPO / "bench" / "ceiling")).resolve()
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    rows: list[Comparison] = []
    notes: list[str] = []
    rounds = arguments.rounds
    try:
        require_h2load()
        require_wrk()
        busy_before = machine_busy_now()
        credentials = Credentials.for_tenant(TENANT)
        authorization = credentials.authorization
        with tempfile.TemporaryDirectory(prefix="cs-hot-") as directory, ExitStack() as stack:
            work = Path(directory)
            ceiling_server, ceiling_call = start_grpc_pg_ceiling(
                stack, log, ceiling_dir, pg_url, work
            )

            service = start_service(stack, log, pg_url, "cs_hot", work, 1, credentials)
            server, port = service.server, service.grpc_port
            wait_until_serving(server, port)
            get_request = assignment_pb2.GetAssignmentRequest(
                tenant=TENANT, segment_id=SEGMENT_ID, customer_id=GET_CUSTOMER
            )
            list_request = segment_pb2.ListSegmentsRequest(tenant=TENANT, customer_id=GET_CUSTOMER)
            preload(log, service, credentials, arguments.preload)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                got = get_assignment(channel, get_request, credentials)
                listed = segments_of_customer(channel, list_request, credentials)
            log.passed(
                f"ListSegments(customer_id={GET_CUSTOMER}) returns its {CUSTOMER_SEGMENTS} segments"
            )
            calls = {
                "segments": unary_call(
                    work, port, LIST_METHOD, list_request.SerializeToString(), listed.ByteSize()
                ),
                "get": unary_call(
                    work, port, GET_METHOD, get_request.SerializeToString(), got.ByteSize()
                ),
            }
            path = f"/customer-segment/{TENANT}/segments/{SEGMENT_ID}/customers/{GET_CUSTOMER}"
            rest_url = f"http://127.0.0.1:{service.http_port}{path}"
            fetch_assignment(rest_url, credentials)

            def one_round(
                label: str, measured: Child, call: UnaryCall, token: str | None
            ) -> Throughput:
                return measure_unary(
                    log, label, measured, call.url, call.body, call.response_bytes, 1, token
                )

            measures: dict[str, Callable[[], Throughput]] = {
                "ceiling gRPC pg": partial(
                    one_round, "ceiling gRPC pg", ceiling_server, ceiling_call, None
                ),
                **{
                    f"service {name}": partial(
                        one_round, f"service {name}", server, call, authorization
                    )
                    for name, call in calls.items()
                },
                "REST GET": partial(
                    measure_wrk, log, "REST GET", server, rest_url, 1, authorization
                ),
            }
            reads = interleaved(log, rounds, measures)
            ceiling = reads["ceiling gRPC pg"]
            measured = {name: reads[f"service {name}"] for name in calls}
            rest = reads["REST GET"]
            for name, figure in reads.items():
                used = cpu_per_call_us(figure)
                if used is not None:
                    notes.append(
                        f"server CPU per call, {name} (its median round): {used:,.0f} µs"
                        + (" (REST served in the server process)" if name == "REST GET" else "")
                    )
            ceiling_server.stop()  # idle from here on; the stack's stop is then a no-op
            rows += [
                Comparison(
                    "segments of a customer (ListSegments, 5 of 20)",
                    "req/s",
                    measured["segments"].per_second,
                    "gRPC + asyncpg read",
                    ceiling.per_second,
                    TARGETS["segments"],
                ),
                Comparison(
                    "GetAssignment",
                    "req/s",
                    measured["get"].per_second,
                    "gRPC + asyncpg read",
                    ceiling.per_second,
                    TARGETS["get"],
                ),
                Comparison(
                    "REST GET of one assignment",
                    "req/s",
                    rest.per_second,
                    "service gRPC GetAssignment",
                    measured["get"].per_second,
                    TARGETS["rest"],
                ),
            ]
            if not arguments.skip_bulk:
                bulk = measure_bulk_in_turns(
                    log, service, credentials, pg_url, arguments.bulk_rows, arguments.bulk_rounds
                )
                notes += bulk.notes
                for label in ("BulkUpsert", "StreamUpsert"):
                    for phase in ("insert", "update"):
                        rows.append(
                            Comparison(
                                f"{label} {phase}",
                                "rows/s",
                                bulk.median(f"{label} {phase}"),
                                f"bare statements {phase}",
                                bulk.median(f"bare {phase}"),
                                TARGETS["bulk"],
                            )
                        )
            for name, call in calls.items():
                rate = measured[name].per_second * LATENCY_LOAD
                latency = measure_latency(log, f"latency {name}", call, authorization, rate, work)
                notes.append(
                    f"latency of {name} at {LATENCY_LOAD:.0%} of its maximum "
                    f"({rate:,.0f} calls/s): p50 {latency.p50_ms:.2f} ms, "
                    f"p99 {latency.p99_ms:.2f} ms"
                )
            if arguments.soak_seconds:
                before = resident_memory(server.pid)
                rates = {name: figure.per_second for name, figure in measured.items()}
                soak(log, server, port, calls, rest_url, credentials, rates, arguments.soak_seconds)
                after = resident_memory(server.pid)
                grown = []
                for process, start in before.items():
                    end = after.get(process, 0)
                    notes.append(
                        f"resident memory of {process}: {start / 2**20:.1f} MiB before, "
                        f"{end / 2**20:.1f} MiB after {arguments.soak_seconds} s of mixed load"
                    )
                    if end - start > max(start * MEMORY_GROWTH, MEMORY_SLACK_BYTES):
                        grown.append(process)
                if grown:
                    notes.append(f"memory NOT flat: {', '.join(grown)}")
                else:
                    log.passed(
                        f"memory flat: every process grew by at most {MEMORY_GROWTH:.0%} or "
                        f"{MEMORY_SLACK_BYTES // 2**20} MiB over the soak"
                    )
            log.step("service: stopping the server, dropping the database")
        facts = [
            (
                name,
                f"`.venv/bin/python bench/hot_paths.py {' '.join(sys.argv[1:])}`".replace(
                    " `", "`"
                ),
            )
            if name == "Command"
            else (name, value)
            for name, value in context(pg_url, ceiling_dir, busy_before, arguments.bulk_rows)
        ]
    except (BenchError, grpc.RpcError) as error:
        print(f"[bench] FAILED: {error}", file=sys.stderr)
        return 1
    publish(REPORT_PATH, "Benchmark: hot paths vs their limits", rows, facts, log.checks, notes)
    print(f"\n[bench] report written to {REPORT_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
