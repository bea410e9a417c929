"""The REST gateway beside the same calls over gRPC and the REST ceiling, measured in one run.

1. The REST ceiling: bench/ceiling/rest_ceiling.py (env CEILING_DIR), an aiohttp handler
   returning a canned assignment, driven with wrk exactly as its run.sh does (wrk -t1 -c32 -d5s;
   with --timeout 10s, so that a stalled answer counts as slow rather than as an error).
2. The service, with `serve --workers` 1 and then 2 (each worker is a gRPC server process that
   serves REST too, in process): a fresh database
   cs_gwbench_<random>, `customer-segments migrate`, `customer-segments serve` with gRPC and
   REST ports, one segment (CreateSegment) and --preload assignments (BulkUpsertAssignments).
   Then, on that one server:
   - GET one assignment over REST, `GET /customer-segment/{tenant}/segments/{segmentId}/
     customers/{customerId}`, under the ceiling's wrk load, once one urllib call has shown that
     it answers 200 with the assignment; wrk must see no non-2xx answer and no socket error;
   - the same call over gRPC, GetAssignment, under bench/run.py's h2load load
     (-n 30000 -c 16 -m 10 -t 1), every call answered with the assignment;
   - `PUT .../customers/bulk` with 200-item bodies (the documented cap) from
     bench/rest_bulk_client.py, 4 clients of one connection each, beside BulkUpsertAssignments
     with 200-item requests from bench/bulk_client.py, 4 channels, the same number of rows:
     inserts, then updates of the same keys; every item must come back 201, then 204. Both load
     generators are processes of their own and report their own CPU use.
   Every call, REST or gRPC, carries one bearer token (read and manage scopes, tenant "bench"),
   signed with a secret made for the run and given to the server in env
   CUSTOMER_SEGMENTS_JWT_SECRET; a REST GET without it must be answered 401. The REST ceiling
   takes no token.
3. A table: REST GET against gRPC GetAssignment (target: REST >= 70%), REST GET against the
   REST ceiling (for information), bulk rows/s REST against gRPC (for information); also written
   to bench/reports/gateway-latest.md. Every server started is stopped and the database dropped,
   failure or not.

Usage: .venv/bin/python bench/gateway.py [--help] (no make target; `make bench` runs
bench/run.py, the gRPC benchmark). PostgreSQL comes from env PGURL (default
postgresql://postgres@127.0.0.1:5432/test; the service gets a database of its own on that
server). Extra `serve` flags can be given in env BENCH_SERVE_ARGS (e.g. "--db-pool-size 4").
Needs wrk and h2load on PATH. Exit status 1 when a step fails or a check does not hold; a missed
target is reported, not an error.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from customersegment.v1 import assignment_pb2
from harness import (
    H2LOAD_ARGS,
    BenchError,
    Child,
    CpuSample,
    Credentials,
    bench_arguments,
    fetch_value,
    free_port,
    grpc_frame,
    port_accepts,
    require_h2load,
    require_tool,
    run_command,
    wait_until,
)
from report import Comparison, publish
from run import (
    BULK_STREAMS,
    BUSY_BEFORE,
    DEFAULT_PGURL,
    GET_CUSTOMER,
    PYTHON,
    REPO,
    SEGMENT_ID,
    TENANT,
    Log,
    Throughput,
    checked_phases,
    create_segment,
    get_assignment,
    machine_busy_now,
    measure_bulk,
    measure_unary,
    refused_without_token,
    start_service,
    wait_until_serving,
)

BENCH_DIR = Path(__file__).resolve().parent
REPORT_PATH = BENCH_DIR / "reports" / "gateway-latest.md"

WRK_ARGS = ("-t1", "-c32", "-d5s")  # exactly bench/ceiling/run.sh's REST load
# wrk counts an answer slower than 2 s (its default) as a socket error. On a 2-core machine
# running PostgreSQL, wrk and --workers 2, a few calls stall that long (gRPC ones too): they are
# slow answers, not failures, so they count in the figure and the slowest one is reported.
WRK_ANSWER_TIMEOUT = ("--timeout", "10s")
WRK_TIMEOUT_S = 60.0
GET_TARGET = 0.70  # REST GET against the same call over gRPC (API v1: at least 70%)
BULK_ITEMS = 200  # per REST body (the documented cap) and per gRPC request alike
HEADER = ["Measure", "REST", "Compared with", "Its value", "Ratio", "Target", "Verdict"]
CEILING_PATH = "/customer-segment/acme/segments/seg-1/customers/c1"  # as in run.sh


@dataclass(frozen=True)
class GatewayFigures:
    rest_get: Throughput
    grpc_get: Throughput
    rest_bulk_insert: Throughput  # PUT .../customers/bulk, 200 items per body
    rest_bulk_update: Throughput
    grpc_bulk_insert: Throughput  # BulkUpsertAssignments, 200 items per request
    grpc_bulk_update: Throughput


# --- wrk ------------------------------------------------------------------------------------


def require_wrk() -> str:
    return require_tool("wrk", "wrk")


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    requests: int
    not_2xx: int  # answers with status 400 and above ("Non-2xx or 3xx responses")
    socket_errors: str | None  # e.g. "connect 0, read 3, write 0, timeout 0", when any
    slowest: str  # the slowest answer, as wrk prints it (e.g. "1.77s")

    def problems(self) -> list[str]:
        found = []
        if self.requests == 0:
            found.append("no request completed")
        if self.not_2xx:
            found.append(f"{self.not_2xx} of {self.requests} answers were not 2xx or 3xx")
        if self.socket_errors:
            found.append(f"socket errors: {self.socket_errors}")
        return found


def wrk(url: str, authorization: str | None = None) -> WrkResult:
    """HTTP/1.1 GETs over keep-alive connections, the way bench/ceiling/run.sh drives the
    REST ceiling; with `authorization`, each request carries it (the ceiling takes none)."""
    headers = [] if authorization is None else ["-H", f"Authorization: {authorization}"]
    argv = [require_wrk(), *WRK_ARGS, *WRK_ANSWER_TIMEOUT, *headers, url]
    output = run_command(argv, timeout=WRK_TIMEOUT_S)
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    if rate is None or requests is None or latency is None:
        raise BenchError(f"unexpected wrk output:\n{output}")
    not_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.+)", output)
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        requests=int(requests.group(1)),
        not_2xx=int(not_2xx.group(1)) if not_2xx else 0,
        socket_errors=socket_errors.group(1).strip() if socket_errors else None,
        slowest=latency.group(1),
    )


def measure_wrk(
    log: Log, label: str, server: Child, url: str, rounds: int, authorization: str | None = None
) -> Throughput:
    """wrk against `url`, `rounds` times (the median counts); every answer must be 2xx.
    `authorization`, when given, goes with every request."""
    figures, slowest = [], []
    for _ in range(rounds):
        log.step(f"{label}: wrk {' '.join(WRK_ARGS + WRK_ANSWER_TIMEOUT)} {url}")
        before = CpuSample.take(server.pid)
        result = wrk(url, authorization)
        cpu = before.until(CpuSample.take(server.pid))
        problems = result.problems()
        if problems:
            raise BenchError(f"{label}: " + "; ".join(problems) + f"\nlog:\n{server.tail()}")
        figures.append(Throughput(result.requests_per_second, cpu))
        slowest.append(result.slowest)
    figures.sort(key=lambda figure: figure.per_second)
    rates = ", ".join(f"{figure.per_second:,.0f}" for figure in figures)
    log.passed(
        f"{label}: {rounds} x wrk {' '.join(WRK_ARGS + WRK_ANSWER_TIMEOUT)}, no non-2xx answer, "
        f"no socket error ({rates} req/s; slowest answer {', '.join(slowest)})"
    )
    return figures[len(figures) // 2]


# --- 1. the REST ceiling --------------------------------------------------------------------


def measure_rest_ceiling(log: Log, ceiling_dir: Path, work: Path, rounds: int) -> Throughput:
    port = free_port()
    argv = [PYTHON, str(ceiling_dir / "rest_ceiling.py"), str(port)]
    with ExitStack() as stack:
        server = Child("rest_ceiling", argv, work)
        stack.callback(server.stop)
        wait_until(partial(port_accepts, port), f"rest_ceiling.py on {port}", server)
        url = f"http://127.0.0.1:{port}{CEILING_PATH}"
        return measure_wrk(log, "ceiling REST", server, url, rounds)


# --- 2. the service -------------------------------------------------------------------------


def listening_sockets(port: int) -> int:
    """TCP sockets listening on `port`: each process of `serve --workers N` has its own
    (SO_REUSEPORT), so N of them mean that every worker is up."""
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local_address, state = fields[1], fields[3]
            if state == "0A" and int(local_address.rsplit(":", 1)[1], 16) == port:  # LISTEN
                count += 1
    return count


def fetch_assignment(url: str, credentials: Credentials) -> tuple[dict[str, Any], int]:
    """One GET through urllib: the assignment it must answer 200 with, and the body's size."""
    request = urllib.request.Request(url, headers={"Authorization": credentials.authorization})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except OSError as error:  # urllib.error.HTTPError included: a status of 400 and above
        raise BenchError(f"GET {url}: {error}") from None
    if status != 200:
        raise BenchError(f"GET {url}: status {status} instead of 200")
    assignment: dict[str, Any] = json.loads(body)
    customer = assignment.get("customer", {})
    if customer.get("id") != GET_CUSTOMER or "metadata" not in assignment:
        raise BenchError(f"GET {url} answered with another body: {body[:300]!r}")
    return assignment, len(body)


def rest_refused_without_token(url: str) -> str:
    """A GET without a token must be answered 401: the figures are those of the authenticated
    gateway. The check that held, for the report."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        raise BenchError(f"GET {url} without a token: {error}") from None
    if status != 401:
        raise BenchError(f"GET {url} without a token: status {status} instead of 401")
    return "a REST GET without a token is answered 401"


def measure_rest_bulk(
    log: Log, server: Child, http_port: int, credentials: Credentials, rows: int, key_prefix: str
) -> list[Throughput]:
    """rest_bulk_client.py (with the token in its env), inserts then updates; every item must
    come back 201, then 204."""
    argv = [
        PYTHON,
        str(BENCH_DIR / "rest_bulk_client.py"),
        f"--base-url=http://127.0.0.1:{http_port}",
        f"--tenant={TENANT}",
        f"--segment-id={SEGMENT_ID}",
        f"--rows={rows}",
        f"--items-per-body={BULK_ITEMS}",
        f"--clients={BULK_STREAMS}",
        f"--key-prefix={key_prefix}",
        "--phases=insert,update",
        f"--server-pid={server.pid}",
    ]
    label = "REST PUT .../customers/bulk"
    log.step(f"{label}: {rows:,} rows per phase, {BULK_ITEMS} items per body")
    output = run_command(argv, timeout=1800, env=credentials.client_env())
    return checked_phases(log, label, server, output, rows)


def measure_service(
    log: Log,
    pg_url: str,
    work: Path,
    preload: int,
    bulk_rows: int,
    rounds: int,
    workers: int,
    credentials: Credentials,
) -> GatewayFigures:
    with ExitStack() as stack:
        service = start_service(stack, log, pg_url, "cs_gwbench", work, workers, credentials)
        server, grpc_port, http_port = service.server, service.grpc_port, service.http_port

        def every_worker_listens() -> bool:
            return min(listening_sockets(grpc_port), listening_sockets(http_port)) >= workers

        wait_until(every_worker_listens, f"{workers} workers listening", server, timeout=60)
        wait_until_serving(server, grpc_port)

        request = assignment_pb2.GetAssignmentRequest(
            tenant=TENANT, segment_id=SEGMENT_ID, customer_id=GET_CUSTOMER
        )
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            log.passed(refused_without_token(channel, request))
            create_segment(channel, credentials)
            measure_bulk(
                log,
                server,
                grpc_port,
                credentials,
                "preload (BulkUpsertAssignments)",
                rpc="bulk",
                rows=preload,
                items_per_message=1000,
                key_prefix="cust-",
                phases=("insert",),
            )
            answer = get_assignment(channel, request, credentials)
        log.passed(f"GetAssignment({GET_CUSTOMER}) through the Python stub returns it")

        path = f"/customer-segment/{TENANT}/segments/{SEGMENT_ID}/customers/{GET_CUSTOMER}"
        rest_url = f"http://127.0.0.1:{http_port}{path}"
        log.passed(rest_refused_without_token(rest_url))
        _, size = fetch_assignment(rest_url, credentials)
        log.passed(f"GET {path} answers 200 with the assignment ({size} bytes of JSON)")
        authorization = credentials.authorization
        rest_get = measure_wrk(log, "REST GET", server, rest_url, rounds, authorization)

        body = work / "get-assignment-request.bin"
        body.write_bytes(grpc_frame(request.SerializeToString()))
        method = "customersegment.v1.CustomerAssignmentService/GetAssignment"
        grpc_url = f"http://127.0.0.1:{grpc_port}/{method}"
        grpc_get = measure_unary(
            log,
            "gRPC GetAssignment",
            server,
            grpc_url,
            body,
            answer.ByteSize(),
            rounds,
            authorization,
        )

        rest_insert, rest_update = measure_rest_bulk(
            log, server, http_port, credentials, bulk_rows, key_prefix="rest-bulk-"
        )
        grpc_insert, grpc_update = measure_bulk(
            log,
            server,
            grpc_port,
            credentials,
            "gRPC BulkUpsertAssignments",
            rpc="bulk",
            rows=bulk_rows,
            items_per_message=BULK_ITEMS,
            key_prefix="grpc-bulk-",
        )
        log.step("service: stopping the server, dropping the database")
    return GatewayFigures(rest_get, grpc_get, rest_insert, rest_update, grpc_insert, grpc_update)


# --- 3. the report --------------------------------------------------------------------------


def comparisons(figures: GatewayFigures, ceiling: Throughput, workers: int) -> list[Comparison]:
    def row(
        measure: str,
        rest: Throughput,
        other_name: str,
        other: Throughput,
        target: float | None,
        unit: str,
    ) -> Comparison:
        label = f"{measure} (--workers {workers})"
        return Comparison(label, unit, rest.per_second, other_name, other.per_second, target)

    f = figures
    return [
        row("GET assignment", f.rest_get, "gRPC GetAssignment", f.grpc_get, GET_TARGET, "req/s"),
        row("GET assignment", f.rest_get, "REST ceiling", ceiling, None, "req/s"),
        row("Bulk PUT insert", f.rest_bulk_insert, "gRPC bulk", f.grpc_bulk_insert, None, "rows/s"),
        row("Bulk PUT update", f.rest_bulk_update, "gRPC bulk", f.grpc_bulk_update, None, "rows/s"),
    ]


def cpu_notes(services: dict[int, GatewayFigures], ceiling: Throughput) -> list[str]:
    measured = [("REST ceiling (wrk)", ceiling)]
    for workers, service in services.items():
        label = f"service (--workers {workers})"
        measured += [
            (f"{label} REST GET (wrk)", service.rest_get),
            (f"{label} gRPC GetAssignment (h2load)", service.grpc_get),
            (f"{label} REST bulk insert", service.rest_bulk_insert),
            (f"{label} REST bulk update", service.rest_bulk_update),
            (f"{label} gRPC bulk insert", service.grpc_bulk_insert),
            (f"{label} gRPC bulk update", service.grpc_bulk_update),
        ]
    notes = []
    for label, figure in measured:
        if figure.cpu is None:
            continue
        client = "" if figure.cpu.client is None else f", load generator {figure.cpu.client:.0%}"
        notes.append(
            f"CPU during {label}: server processes {figure.cpu.process:.0%} of one core"
            f"{client}, machine {figure.cpu.machine:.2f} of {os.cpu_count()} cores busy"
        )
    return notes


def context(
    pg_url: str, ceiling_dir: Path, busy_before: float, preload: int, bulk_rows: int
) -> list[tuple[str, str]]:
    def output(argv: Sequence[str]) -> str:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, cwd=REPO)
        except OSError:
            return "?"
        return done.stdout.strip()

    commit = output(["git", "rev-parse", "--short", "HEAD"]) or "none"
    if output(["git", "status", "--porcelain", "--", "src", "protos"]):
        commit += " + uncommitted changes in src/ or protos/"
    wrk_version = output([require_wrk(), "-v"]).splitlines()[0].split(" [")[0]
    bodies = bulk_rows // BULK_ITEMS
    return [
        ("Date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Command", "`" + " ".join([".venv/bin/python bench/gateway.py", *sys.argv[1:]]) + "`"),
        ("Commit", commit),
        (
            "Machine",
            f"{os.cpu_count()} CPUs shared by PostgreSQL, the server and the load generator; "
            f"{busy_before:.2f} cores busy in the second before the run",
        ),
        (
            "Software",
            f"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, grpcio "
            f"{grpc.__version__}, {wrk_version}, {output([require_h2load(), '--version'])}, "
            f"PostgreSQL {fetch_value(pg_url, 'show server_version')}",
        ),
        ("REST ceiling", f"{os.path.relpath(ceiling_dir, REPO)}/rest_ceiling.py"),
        (
            "Load",
            f"wrk {' '.join(WRK_ARGS + WRK_ANSWER_TIMEOUT)} for the REST GET and the ceiling "
            "(HTTP/1.1, keep-alive); "
            f"h2load {' '.join(H2LOAD_ARGS)} for gRPC GetAssignment; one assignment of "
            f"{preload:,} preloaded. Bulk: {bulk_rows:,} rows per phase "
            f"(insert, then update of the same keys), {BULK_ITEMS} items per REST body or gRPC "
            f"request, {BULK_STREAMS} clients of one connection each: REST "
            f"bench/rest_bulk_client.py ({bodies // BULK_STREAMS} bodies per client), gRPC "
            "bench/bulk_client.py, each a process of its own. Every call to the service, REST or "
            "gRPC, carries one HS256 bearer token (the REST ceiling takes none)",
        ),
    ]


def main() -> int:
    parser, arguments, worker_counts = bench_arguments(
        __doc__.splitlines()[0], 10_000, 40_000, "wrk and h2load runs per server, the median counts"
    )
    if arguments.preload < int(GET_CUSTOMER.removeprefix("cust-")):
        parser.error(f"--preload must reach {GET_CUSTOMER}, the customer read")
    ceiling_dir = Path(os.environ.get("CEILING_DIR", REPO / "bench" / "ceiling"))
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    # A SIGTERM (a timeout, a CI runner giving up) unwinds like an error: servers are stopped
    # and the database dropped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        require_wrk()
        require_h2load()
        if not (ceiling_dir / "rest_ceiling.py").is_file():
            raise BenchError(f"no rest_ceiling.py in {ceiling_dir} (set CEILING_DIR)")
        busy_before = machine_busy_now()
        rounds = arguments.rounds
        credentials = Credentials.for_tenant(TENANT)
        with tempfile.TemporaryDirectory(prefix="cs-gwbench-") as work:
            ceiling = measure_rest_ceiling(log, ceiling_dir.resolve(), Path(work), rounds)
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
        facts = context(
            pg_url, ceiling_dir.resolve(), busy_before, arguments.preload, arguments.bulk_rows
        )
    except (BenchError, grpc.RpcError) as error:
        print(f"[bench] FAILED: {error}", file=sys.stderr)
        return 1
    rows = [
        row
        for workers, service in services.items()
        for row in comparisons(service, ceiling, workers)
    ]
    notes = cpu_notes(services, ceiling)
    if busy_before > BUSY_BEFORE:
        notes.insert(0, f"{busy_before:.2f} cores were busy before the run: something else ran")
    title = "Benchmark: REST gateway vs gRPC and the REST ceiling"
    publish(REPORT_PATH, title, rows, facts, log.checks, notes, HEADER)
    print(f"\n[bench] report written to {REPORT_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
