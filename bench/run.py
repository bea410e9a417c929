"""The service on PostgreSQL beside this machine's ceilings, measured in one run.

1. Ceilings, from the programs in bench/ceiling (env CEILING_DIR): a grpc.aio server that
   answers from memory, the same with one asyncpg read per call (both driven by h2load exactly
   as its run.sh does), and bulk upserts straight through asyncpg (bulk_ceiling.py 250 4).
   Beside them, for context: the service's own upsert statement on its own schema, driven the
   same way (bench/schema_ceiling.py).
2. The service, with `serve --workers` 1 and then 2 (--workers): a fresh database,
   `customer-segments migrate`, `customer-segments serve`, one segment and --preload
   assignments; then GetAssignment under the same h2load load as the ceiling, and
   BulkUpsertAssignments / StreamUpsertAssignments (inserts, then updates of the
   same keys) from bench/bulk_client.py, a process of its own. Every call to the service
   carries one bearer token (read and manage scopes, tenant "bench"), signed with a secret made
   for the run and given to the servers in env CUSTOMER_SEGMENTS_JWT_SECRET; a call without it
   must be refused. The ceilings take no token.
3. A table of service / ceiling ratios against the targets, also written to
   bench/reports/latest.md. Every server started is stopped and the database dropped.

Usage: make bench, or .venv/bin/python bench/run.py [--help]. PostgreSQL comes from env PGURL
(default postgresql://postgres@127.0.0.1:5432/test, the ceilings' database; the service gets
a database of its own on the same server). Extra `serve` flags can be given in env
BENCH_SERVE_ARGS (e.g. "--db-pool-size 4"). Exit status 1 when a step fails or a check does not
hold; a missed target is reported, not an error.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import schema_ceiling
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, segment_pb2, segment_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import (
    H2LOAD_ARGS,
    BenchError,
    Child,
    CpuSample,
    CpuUse,
    Credentials,
    bench_arguments,
    fetch_value,
    free_port,
    grpc_frame,
    h2load,
    port_accepts,
    require_h2load,
    run_command,
    run_sql,
    wait_until,
    with_database,
)
from report import Comparison, publish

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
REPORT_PATH = BENCH_DIR / "reports" / "latest.md"
PYTHON = sys.executable
SERVICE_COMMAND = str(Path(PYTHON).parent / "customer-segments")

DEFAULT_PGURL = "postgresql://postgres@127.0.0.1:5432/test"
TENANT = "bench"
SEGMENT_ID = "seg-bench"
GET_CUSTOMER = "cust-42"  # one fixed preloaded customer, as the ceiling reads one fixed key
GET_ASSIGNMENT_TARGET = 0.70
BULK_TARGET = 0.50
BULK_STREAMS = 4  # as many as the bulk ceiling's connections
BUSY_BEFORE = 0.3  # cores busy in the second before the run; above it the figures are suspect
# From bench/ceiling/run.sh: fills ceiling_assignments for the gRPC + PostgreSQL ceiling.
CEILING_FILL_SQL = (
    "create table if not exists ceiling_assignments(tenant text, segment_id text, "
    "customer_id text, assignment_type text, version int, "
    "primary key(tenant, segment_id, customer_id)); "
    "insert into ceiling_assignments select 'acme','seg-1','cust-'||g,'MANUAL',1 "
    "from generate_series(1,100000) g on conflict do nothing;"
)


@dataclass(frozen=True)
class Throughput:
    per_second: float
    cpu: CpuUse | None = None  # how busy the measured server and the machine were meanwhile


@dataclass(frozen=True)
class Ceilings:
    grpc_memory: Throughput
    grpc_pg: Throughput
    bulk_insert: Throughput
    bulk_update: Throughput
    # The service's own upsert statement on its own schema, straight through asyncpg.
    schema_insert: Throughput
    schema_update: Throughput


@dataclass(frozen=True)
class ServiceFigures:
    preload: Throughput
    get_assignment: Throughput
    bulk_insert: Throughput  # BulkUpsertAssignments, 1000 items per request
    bulk_update: Throughput
    stream_insert: Throughput  # StreamUpsertAssignments, 200 items per message
    stream_update: Throughput


class Log:
    """Progress on the terminal, and the checks that held (they go into the report)."""

    def __init__(self) -> None:
        self.checks: list[str] = []

    def step(self, text: str) -> None:
        print(f"[bench] {text}", flush=True)

    def passed(self, check: str) -> None:
        self.checks.append(check)
        self.step(f"ok: {check}")


# --- h2load, shared by ceilings and service -------------------------------------------------


def measure_unary(
    log: Log,
    label: str,
    server: Child,
    url: str,
    body: Path,
    response_bytes: int,
    rounds: int,
    authorization: str | None = None,
) -> Throughput:
    """h2load against `url`, `rounds` times (the median counts); every call must come back with
    a `response_bytes` message. `authorization`, when given, goes with every call."""
    figures = []
    for _ in range(rounds):
        log.step(f"{label}: h2load {' '.join(H2LOAD_ARGS)} {url}")
        before = CpuSample.take(server.pid)
        result = h2load(url, body, authorization)
        cpu = before.until(CpuSample.take(server.pid))
        problems = result.problems(response_bytes)
        if problems:
            raise BenchError(f"{label}: " + "; ".join(problems))
        figures.append(Throughput(result.requests_per_second, cpu))
    figures.sort(key=lambda figure: figure.per_second)
    rates = ", ".join(f"{figure.per_second:,.0f}" for figure in figures)
    log.passed(
        f"{label}: {rounds} x {result.requests} requests succeeded with status 2xx and one "
        f"{response_bytes}-byte response message each ({rates} req/s)"
    )
    return figures[len(figures) // 2]


# --- 1. ceilings ----------------------------------------------------------------------------


def load_echo_stubs(ceiling_dir: Path, out: Path) -> tuple[ModuleType, ModuleType]:
    """Generates the ceiling's stubs into `out` (as run.sh does) and imports them."""
    out.mkdir()
    run_command(
        [
            PYTHON,
            "-m",
            "grpc_tools.protoc",
            f"-I{ceiling_dir}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(ceiling_dir / "echo.proto"),
        ],
        timeout=60,
    )
    sys.path.insert(0, str(out))
    return importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc")


def measure_ceilings(log: Log, ceiling_dir: Path, pg_url: str, work: Path, rounds: int) -> Ceilings:
    stubs = work / "ceiling-gen"
    echo_pb2, echo_pb2_grpc = load_echo_stubs(ceiling_dir, stubs)
    request = echo_pb2.Req(tenant="acme", segment_id="seg-1", customer_id="cust-42")
    body = work / "ceiling-request.bin"
    body.write_bytes(grpc_frame(request.SerializeToString()))
    log.step("ceiling: filling ceiling_assignments")
    run_sql(pg_url, CEILING_FILL_SQL)
    env = {"CEILING_GEN": str(stubs), "PGURL": pg_url}

    unary: dict[str, Throughput] = {}
    for mode in ("memory", "pg"):
        port = free_port()
        argv = [PYTHON, str(ceiling_dir / "grpc_ceiling.py"), mode, str(port)]
        with ExitStack() as stack:
            server = Child(f"grpc_ceiling_{mode}", argv, work, env)
            stack.callback(server.stop)
            wait_until(partial(port_accepts, port), f"grpc_ceiling.py {mode} on {port}", server)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = echo_pb2_grpc.EchoStub(channel).Get(request, timeout=10)
            url = f"http://127.0.0.1:{port}/ceiling.v1.Echo/Get"
            label = f"ceiling gRPC {mode}"
            unary[mode] = measure_unary(log, label, server, url, body, answer.ByteSize(), rounds)

    log.step("ceiling: bulk_ceiling.py 250 4")
    output = run_command(
        [PYTHON, str(ceiling_dir / "bulk_ceiling.py"), "250", "4"], timeout=600, env=env
    )
    bulk = {}  # lines like "insert: 92000 rows/s (0.54s)"
    for line in output.splitlines():
        phase, _, rest = line.partition(":")
        if phase in ("insert", "update"):
            bulk[phase] = Throughput(float(rest.split()[0]))
    if set(bulk) != {"insert", "update"}:
        raise BenchError(f"unexpected bulk_ceiling.py output:\n{output}")
    schema = measure_schema_ceiling(log, pg_url)
    return Ceilings(unary["memory"], unary["pg"], bulk["insert"], bulk["update"], *schema)


def measure_schema_ceiling(log: Log, pg_url: str) -> tuple[Throughput, Throughput]:
    database = f"cs_bench_schema_{secrets.token_hex(4)}"
    log.step(f"ceiling: the service's upsert statement on its schema (database {database})")
    run_sql(pg_url, f'create database "{database}"')
    try:
        url = with_database(pg_url, database)
        run_command([SERVICE_COMMAND, "migrate", "--database-url", url], timeout=120)
        figures = asyncio.run(schema_ceiling.measure(url))
    finally:
        run_sql(pg_url, f'drop database if exists "{database}" with (force)')
    return Throughput(figures["insert"]), Throughput(figures["update"])


# --- 2. the service -------------------------------------------------------------------------


def migrated_database(stack: ExitStack, pg_url: str, prefix: str, log: Log) -> str:
    """A new database `<prefix>_<random>` migrated by the service, dropped when `stack`
    closes; its URL."""
    database = f"{prefix}_{secrets.token_hex(4)}"
    log.step(f"service: creating database {database}")
    run_sql(pg_url, f'create database "{database}"')
    stack.callback(run_sql, pg_url, f'drop database if exists "{database}" with (force)')
    database_url = with_database(pg_url, database)
    run_command([SERVICE_COMMAND, "migrate", "--database-url", database_url], timeout=120)
    return database_url


@dataclass(frozen=True)
class StartedService:
    server: Child
    database_url: str
    grpc_port: int
    http_port: int


def start_service(
    stack: ExitStack,
    log: Log,
    pg_url: str,
    prefix: str,
    work: Path,
    workers: int,
    credentials: Credentials,
    database_url: str | None = None,
    *,
    name: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> StartedService:
    """`customer-segments serve` on a new migrated database (see migrated_database), or on
    `database_url` when given (migrated already), with gRPC
    and REST on free loopback ports (never 8080, which may be in use) and the run's secret;
    stopped, then its database dropped, when `stack` closes. Extra flags: `extra_args`, then
    env BENCH_SERVE_ARGS; `env` is added to the server's environment; `name` names its log.
    The caller waits for it to serve, its own way."""
    if database_url is None:
        database_url = migrated_database(stack, pg_url, prefix, log)
    grpc_port, http_port = free_port(), free_port()
    serve = [SERVICE_COMMAND, "serve", "--database-url", database_url]
    serve += ["--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port)]
    serve += ["--http-host", "127.0.0.1", "--http-port", str(http_port)]
    serve += ["--log-level", "WARNING", "--workers", str(workers)]
    # Metrics off unless extra_args or BENCH_SERVE_ARGS turn them on (later flags win).
    serve += ["--metrics-port", "0", *extra_args]
    serve += os.environ.get("BENCH_SERVE_ARGS", "").split()
    log.step(f"service: {' '.join(serve[1:])}")
    server_env = {**credentials.server_env(), **(env or {})}
    server = Child(name or f"customer-segments-{workers}w", serve, work, server_env)
    stack.callback(server.stop)  # runs before the drop: callbacks run last-in, first-out
    return StartedService(server, database_url, grpc_port, http_port)


def wait_until_serving(server: Child, port: int) -> None:
    def serving() -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
            except grpc.RpcError:
                return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    wait_until(serving, "health SERVING", server, timeout=60)


def create_segment(channel: grpc.Channel, credentials: Credentials) -> None:
    segment = segment_pb2.Segment(
        id=SEGMENT_ID,
        name={"en": "Benchmark"},
        site_code="main",
        status=segment_pb2.SEGMENT_STATUS_ACTIVE,
    )
    request = segment_pb2.CreateSegmentRequest(tenant=TENANT, segment=segment)
    stub = segment_pb2_grpc.SegmentServiceStub(channel)
    stub.CreateSegment(request, timeout=10, metadata=credentials.metadata)


def get_assignment(
    channel: grpc.Channel, request: Any, credentials: Credentials
) -> assignment_pb2.GetAssignmentResponse:
    """The whole answer (h2load checks its size), once it is shown to hold the assignment."""
    stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
    answer = stub.GetAssignment(request, timeout=10, metadata=credentials.metadata)
    found = answer.assignment
    if found.customer.id != request.customer_id or found.segment_id != request.segment_id:
        raise BenchError(f"GetAssignment returned another assignment: {answer}")
    return answer


def refused_without_token(channel: grpc.Channel, request: Any) -> str:
    """GetAssignment without a token must be refused (UNAUTHENTICATED): the figures are those of
    the authenticated service. The check that held, for the report."""
    stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
    try:
        stub.GetAssignment(request, timeout=10)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return "GetAssignment without a token is refused with UNAUTHENTICATED"
        message = f"GetAssignment without a token: {code} instead of UNAUTHENTICATED"
        raise BenchError(message) from None
    raise BenchError("GetAssignment without a token succeeded: the service checks no token")


def measure_bulk(
    log: Log,
    server: Child,
    port: int,
    credentials: Credentials,
    label: str,
    *,
    rpc: str,
    rows: int,
    items_per_message: int,
    key_prefix: str,
    phases: tuple[str, ...] = ("insert", "update"),
) -> list[Throughput]:
    """Runs bulk_client.py (with the token in its env); every item must come back 201 on insert
    and 204 on update."""
    argv = [
        PYTHON,
        str(BENCH_DIR / "bulk_client.py"),
        f"--target=127.0.0.1:{port}",
        f"--tenant={TENANT}",
        f"--segment-id={SEGMENT_ID}",
        f"--rpc={rpc}",
        f"--rows={rows}",
        f"--items-per-message={items_per_message}",
        f"--streams={BULK_STREAMS}",
        f"--key-prefix={key_prefix}",
        f"--phases={','.join(phases)}",
        f"--server-pid={server.pid}",
    ]
    log.step(f"{label}: {rows:,} rows per phase, {items_per_message} items per message")
    output = run_command(argv, timeout=1800, env=credentials.client_env())
    return checked_phases(log, label, server, output, rows)


def checked_phases(log: Log, label: str, server: Child, output: str, rows: int) -> list[Throughput]:
    """The rates in a load generator's JSON output (bulk_client.py, rest_bulk_client.py); every
    item must have come back 201 on insert and 204 on update."""
    reported: list[dict[str, Any]] = json.loads(output)
    figures = []
    for phase in reported:
        expected = {"insert": "201", "update": "204"}[phase["phase"]]
        if phase["problems"] or phase["codes"] != {expected: rows}:
            raise BenchError(
                f"{label} {phase['phase']}: expected {rows} results of code {expected}, got "
                f"{phase['codes']}; {phase['problems']}\nserver log:\n{server.tail()}"
            )
        log.passed(f"{label} {phase['phase']}: {rows:,} results received, all code {expected}")
        cpu = CpuUse(phase["server_cores"], phase["machine_cores"], phase.get("client_cores"))
        figures.append(Throughput(rows / phase["seconds"], cpu))
    return figures


def measure_service(
    log: Log,
    pg_url: str,
    work: Path,
    preload: int,
    bulk_rows: int,
    rounds: int,
    workers: int,
    credentials: Credentials,
) -> ServiceFigures:
    with ExitStack() as stack:
        service = start_service(stack, log, pg_url, "cs_bench", work, workers, credentials)
        server, port = service.server, service.grpc_port
        wait_until_serving(server, port)

        bulk = partial(measure_bulk, log, server, port, credentials)
        request = assignment_pb2.GetAssignmentRequest(
            tenant=TENANT, segment_id=SEGMENT_ID, customer_id=GET_CUSTOMER
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            log.passed(refused_without_token(channel, request))
            create_segment(channel, credentials)
            (preloaded,) = bulk(
                "preload (BulkUpsertAssignments)",
                rpc="bulk",
                rows=preload,
                items_per_message=1000,
                key_prefix="cust-",
                phases=("insert",),
            )
            answer = get_assignment(channel, request, credentials)
        log.passed(f"GetAssignment({GET_CUSTOMER}) through the Python stub returns it")

        body = work / "get-assignment-request.bin"
        body.write_bytes(grpc_frame(request.SerializeToString()))
        method = "customersegment.v1.CustomerAssignmentService/GetAssignment"
        url = f"http://127.0.0.1:{port}/{method}"
        label = "service GetAssignment"
        size, authorization = answer.ByteSize(), credentials.authorization
        get = measure_unary(log, label, server, url, body, size, rounds, authorization)

        bulk_insert, bulk_update = bulk(
            "BulkUpsertAssignments",
            rpc="bulk",
            rows=bulk_rows,
            items_per_message=1000,
            key_prefix="bulk-unary-",
        )
        stream_insert, stream_update = bulk(
            "StreamUpsertAssignments",
            rpc="stream",
            rows=bulk_rows,
            items_per_message=200,
            key_prefix="bulk-stream-",
        )
        log.step("service: stopping the server, dropping the database")
    return ServiceFigures(preloaded, get, bulk_insert, bulk_update, stream_insert, stream_update)


# --- 3. the report --------------------------------------------------------------------------


def comparisons(service: ServiceFigures, ceilings: Ceilings, workers: int) -> list[Comparison]:
    def row(
        measure: str, figure: Throughput, name: str, ceiling: Throughput, target: float | None
    ) -> Comparison:
        unit = "req/s" if measure.startswith("Get") else "rows/s"
        measure += f" (--workers {workers})"
        return Comparison(measure, unit, figure.per_second, name, ceiling.per_second, target)

    s, c = service, ceilings
    return [
        row("GetAssignment", s.get_assignment, "gRPC+PostgreSQL", c.grpc_pg, GET_ASSIGNMENT_TARGET),
        row("GetAssignment", s.get_assignment, "gRPC from memory", c.grpc_memory, None),
        row("Bulk insert", s.bulk_insert, "bulk insert", c.bulk_insert, BULK_TARGET),
        row("Bulk update", s.bulk_update, "bulk update", c.bulk_update, BULK_TARGET),
        row("Stream insert", s.stream_insert, "bulk insert", c.bulk_insert, BULK_TARGET),
        row("Stream update", s.stream_update, "bulk update", c.bulk_update, BULK_TARGET),
        row("Bulk insert", s.bulk_insert, "same schema", c.schema_insert, None),
        row("Bulk update", s.bulk_update, "same schema", c.schema_update, None),
        row("Stream insert", s.stream_insert, "same schema", c.schema_insert, None),
        row("Stream update", s.stream_update, "same schema", c.schema_update, None),
        row("Preload insert", s.preload, "bulk insert", c.bulk_insert, None),
    ]


def cpu_notes(services: dict[int, ServiceFigures], ceilings: Ceilings) -> list[str]:
    measured = [
        ("gRPC memory ceiling", ceilings.grpc_memory),
        ("gRPC+PostgreSQL ceiling", ceilings.grpc_pg),
    ]
    for workers, service in services.items():
        label = f"service (--workers {workers})"
        measured += [
            (f"{label} GetAssignment", service.get_assignment),
            (f"{label} preload", service.preload),
            (f"{label} bulk insert", service.bulk_insert),
            (f"{label} bulk update", service.bulk_update),
            (f"{label} stream insert", service.stream_insert),
            (f"{label} stream update", service.stream_update),
        ]
    return [
        f"CPU during {label}: server processes {figure.cpu.process:.0%} of one core, "
        f"machine {figure.cpu.machine:.2f} of {os.cpu_count()} cores busy"
        for label, figure in measured
        if figure.cpu is not None
    ]


def context(
    pg_url: str, ceiling_dir: Path, busy_before: float, bulk_rows: int
) -> list[tuple[str, str]]:
    def output(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return "?"

    commit = output(["git", "rev-parse", "--short", "HEAD"]) or "none"
    if output(["git", "status", "--porcelain", "--", "src", "protos"]):
        commit += " + uncommitted changes in src/ or protos/"
    command = " ".join([".venv/bin/python bench/run.py", *sys.argv[1:]])
    return [
        ("Date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Command", f"`{command}`" + ("" if sys.argv[1:] else " (`make bench`)")),
        ("Commit", commit),
        (
            "Machine",
            f"{os.cpu_count()} CPUs shared by PostgreSQL, the server and the load generator; "
            f"{busy_before:.2f} cores busy in the second before the run",
        ),
        (
            "Software",
            f"Python {sys.version.split()[0]}, grpcio {grpc.__version__}, "
            f"{output([require_h2load(), '--version'])}, "
            f"PostgreSQL {fetch_value(pg_url, 'show server_version')}",
        ),
        ("Ceilings", f"{os.path.relpath(ceiling_dir, REPO)} (one server process, no uvloop)"),
        (
            "Load",
            f"h2load {' '.join(H2LOAD_ARGS)} for GetAssignment; {BULK_STREAMS} concurrent "
            f"calls from bench/bulk_client.py (a process of its own), {bulk_rows:,} rows per "
            "phase, for Bulk = "
            "BulkUpsertAssignments with 1000 items per request, Stream = StreamUpsertAssignments "
            "with 200 items per message, Preload = Bulk filling the table first. Every call to "
            "the service carries one HS256 bearer token (the ceilings take none)",
        ),
    ]


def machine_busy_now() -> float:
    """Cores busy over the next second: other work on the machine skews every figure."""
    before = CpuSample.take(os.getpid())
    time.sleep(1)
    return before.until(CpuSample.take(os.getpid())).machine


def main() -> int:
    _, arguments, worker_counts = bench_arguments(
        __doc__.splitlines()[0], 100_000, 50_000, "h2load runs per server, the median counts"
    )
    ceiling_dir = Path(os.environ.get("CEILING_DIR", REPO / "bench" / "ceiling"))
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    try:
        require_h2load()
        if not (ceiling_dir / "grpc_ceiling.py").is_file():
            raise BenchError(f"no ceiling programs in {ceiling_dir} (set CEILING_DIR)")
        busy_before = machine_busy_now()
        rounds = arguments.rounds
        credentials = Credentials.for_tenant(TENANT)
        with tempfile.TemporaryDirectory(prefix="cs-bench-") as work:
            ceilings = measure_ceilings(log, ceiling_dir.resolve(), pg_url, Path(work), rounds)
            services = {
                workers: measure_service(
                    log,
                    pg_url,
                    Path(work),
                    arguments.preload,
                    arguments.bulk_rows,
                    rounds,
                    workers,
                    credentials,
                )
                for workers in worker_counts
            }
        facts = context(pg_url, ceiling_dir.resolve(), busy_before, arguments.bulk_rows)
    except (BenchError, grpc.RpcError) as error:
        print(f"[bench] FAILED: {error}", file=sys.stderr)
        return 1
    rows = [
        row
        for workers, service in services.items()
        for row in comparisons(service, ceilings, workers)
    ]
    notes = cpu_notes(services, ceilings)
    if busy_before > BUSY_BEFORE:
        notes.insert(0, f"{busy_before:.2f} cores were busy before the run: something else ran")
    publish(REPORT_PATH, "Benchmark: service vs ceilings", rows, facts, log.checks, notes)
    print(f"\n[bench] report written to {REPORT_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
