"""What metrics, access logs and traces cost GetAssignment, each beside everything off, in one run.

1. Three `customer-segments serve` processes (--workers 1, --log-level INFO) on one migrated
   PostgreSQL database (PGURL, as bench/run.py), one segment and --preload assignments:
   - off: --metrics-port 0 --no-access-log, no OTEL_*;
   - metrics + access log: the default settings (the metrics on a free port rather than 9464,
     which another instance on the machine may hold);
   - tracing at 10%: as off, plus OTEL_EXPORTER_OTLP_ENDPOINT pointing to an OTLP/HTTP sink in
     this process that counts the spans it receives, OTEL_TRACES_SAMPLER=
     parentbased_traceidratio and OTEL_TRACES_SAMPLER_ARG=0.1.
   OTEL_* variables of this process's own environment are dropped first: `off` means off.
2. GetAssignment under bench/run.py's h2load load (-n 30000 -c 16 -m 10 -t 1), every call
   answered with the assignment; each round measures the three one after the other (each
   round starting with another), so that the machine's changing load falls on all three
   alike; the median of --rounds counts.
3. A table: metrics + access log against off (target >= 90%), tracing at 10% against off
   (target >= 80%); also written to bench/reports/observability-latest.md. Every server is
   stopped (the traced one exports what it holds) and the database dropped, failure or not.

With --base-src DIR (the `src` of another build, e.g. from `git archive`; may be repeated),
one more server per DIR runs that build with metrics + access log, measured in the same turns:
the A/B of a change to them, by server CPU per call. --requests N: per h2load run.

Usage: make bench-observability, or .venv/bin/python bench/observability.py [--help]. Needs
h2load (make bench-tools installs it). Exit status 1 when a step fails, a check does not
hold, or a target is missed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import median

import grpc
import harness
from customersegment.v1 import assignment_pb2
from harness import BenchError, CpuSample, Credentials, free_port, grpc_frame, require_h2load
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from report import Comparison, publish_verdict
from run import (
    BUSY_BEFORE,
    DEFAULT_PGURL,
    GET_CUSTOMER,
    REPO,
    SEGMENT_ID,
    TENANT,
    Log,
    StartedService,
    create_segment,
    get_assignment,
    machine_busy_now,
    measure_bulk,
    measure_unary,
    migrated_database,
    refused_without_token,
    start_service,
    wait_until_serving,
)

REPORT_PATH = Path(__file__).resolve().parent / "reports" / "observability-latest.md"
METRICS_TARGET = 0.90  # metrics + access log on, against everything off
TRACING_TARGET = 0.80  # tracing at 10% sampling, against everything off
SAMPLED = "0.1"
HEADER = ["Measure", "Feature on", "Compared with", "Its value", "Ratio", "Target", "Verdict"]
METHOD = "customersegment.v1.CustomerAssignmentService/GetAssignment"

OFF = "off"
METRICS = "metrics + access log"
BASE = "metrics + access log (base{})"
TRACING = f"tracing {float(SAMPLED):.0%}"


class OtlpSink:
    """The collector of the traced server: accepts OTLP/HTTP exports and counts their spans
    (in a thread of this process, which only waits for h2load meanwhile)."""

    def __init__(self) -> None:
        self.spans = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                export = ExportTraceServiceRequest.FromString(body)
                sink.spans += sum(
                    len(scope.spans)
                    for spans in export.resource_spans
                    for scope in spans.scope_spans
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per export would drown the bench's own

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def configurations(
    sink: OtlpSink, metrics_port: int, base_srcs: list[Path]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """`serve` flags and environment of each configuration (flags: bench/run.py turns metrics
    off by a flag, which only a later flag overrides)."""
    off = ["--metrics-port", "0", "--no-access-log"]
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": SAMPLED,
    }
    info = ["--log-level", "INFO"]  # the level access lines are written at
    metrics = [*info, "--metrics-port", str(metrics_port), "--access-log"]
    chosen = {OFF: ([*info, *off], {}), METRICS: (metrics, {}), TRACING: ([*info, *off], traced)}
    for number, base_src in enumerate(base_srcs):
        base = [*info, "--metrics-port", str(free_port()), "--access-log"]
        chosen[BASE.format(number)] = (base, {"PYTHONPATH": str(base_src.resolve())})
    return chosen


def metrics_answer(port: int) -> str:
    """Whether /metrics answers on the metrics port, for the report."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            return f"/metrics on the metrics port answered {answer.status}"
    except OSError as error:
        return f"/metrics on the metrics port did not answer ({error})"


def at_fixed_rate(
    log: Log,
    services: dict[str, StartedService],
    url: str,
    body: Path,
    authorization: str,
    rate: int,
) -> dict[str, float]:
    """Server CPU per call (µs) of each server, all driven at once at `rate` calls/s by h2load
    (--rps, per client): the machine's other work falls on every configuration at the same
    moments, and none runs at a throughput of its own."""
    arguments = list(harness.H2LOAD_ARGS)
    clients = int(arguments[arguments.index("-c") + 1])
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    headers += ["-H", f"authorization: {authorization}"]
    before = {label: CpuSample.take(service.server.pid) for label, service in services.items()}
    runs = {
        label: subprocess.Popen(
            [
                harness.require_h2load(),
                *arguments,
                f"--rps={rate / clients:g}",
                "-d",
                str(body),
                *headers,
                url.format(service.grpc_port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for label, service in services.items()
    }
    used: dict[str, float] = {}
    for label, run in runs.items():
        output, _ = run.communicate(timeout=harness.H2LOAD_TIMEOUT_S)
        after = CpuSample.take(services[label].server.pid)
        done = re.search(r"status codes: (\d+) 2xx", output)
        if run.returncode != 0 or done is None or int(done.group(1)) != int(arguments[1]):
            raise BenchError(f"{label}: h2load at a fixed rate failed:\n{output}")
        used[label] = after.process_s - before[label].process_s
    # Each server's CPU to the end of the slowest run: an idle server uses next to none.
    figures = {label: seconds / int(arguments[1]) * 1e6 for label, seconds in used.items()}
    log.step(
        f"{rate} calls/s each, all at once: server CPU per call "
        + ", ".join(f"{label} {cpu:,.0f} µs" for label, cpu in figures.items())
    )
    return figures


def lines_in(service: StartedService) -> int:
    return len(service.server.log_path.read_text(errors="replace").splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="h2load runs per configuration")
    parser.add_argument("--preload", type=int, default=10_000, help="assignments to preload")
    parser.add_argument(
        "--base-src", type=Path, action="append", default=[], help="a build to compare (A/B)"
    )
    parser.add_argument("--requests", type=int, help="per h2load run (default: harness's)")
    parser.add_argument(
        "--fixed-rate",
        type=int,
        help="calls/s to each server, all at once: compares server CPU per call (the req/s "
        "figures are then calls per CPU second)",
    )
    arguments = parser.parse_args()
    if arguments.rounds < 1 or arguments.preload < int(GET_CUSTOMER.removeprefix("cust-")):
        parser.error(f"--rounds must be at least 1 and --preload must reach {GET_CUSTOMER}")
    if arguments.requests:  # fewer on a loaded machine: the same connections and streams
        harness.H2LOAD_ARGS = ("-n", str(arguments.requests), *harness.H2LOAD_ARGS[2:])
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[name]
    log = Log()
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    rates: dict[str, list[float]] = {}
    # Server CPU per call (µs): less at the mercy of the machine's other work than req/s.
    cpu_per_call: dict[str, list[float]] = {}
    notes: list[str] = []
    try:
        require_h2load()
        busy_before = machine_busy_now()
        credentials = Credentials.for_tenant(TENANT)
        with (
            tempfile.TemporaryDirectory(prefix="cs-obsbench-") as work,
            OtlpSink() as sink,
            ExitStack() as stack,
        ):
            database_url = migrated_database(stack, pg_url, "cs_obsbench", log)
            services: dict[str, StartedService] = {}
            metrics_port = free_port()
            for label, (flags, env) in configurations(
                sink, metrics_port, arguments.base_src
            ).items():
                services[label] = start_service(
                    stack,
                    log,
                    pg_url,
                    "cs_obsbench",
                    Path(work),
                    1,
                    credentials,
                    database_url,
                    name=f"serve-{label.split()[0]}{label.partition('(')[2].rstrip(')')}",
                    extra_args=flags,
                    env=env,
                )
            for service in services.values():
                wait_until_serving(service.server, service.grpc_port)
            request = assignment_pb2.GetAssignmentRequest(
                tenant=TENANT, segment_id=SEGMENT_ID, customer_id=GET_CUSTOMER
            )
            first = services[OFF]
            with grpc.insecure_channel(f"127.0.0.1:{first.grpc_port}") as channel:
                log.passed(refused_without_token(channel, request))
                create_segment(channel, credentials)
                measure_bulk(
                    log,
                    first.server,
                    first.grpc_port,
                    credentials,
                    "preload (BulkUpsertAssignments)",
                    rpc="bulk",
                    rows=arguments.preload,
                    items_per_message=1000,
                    key_prefix="cust-",
                    phases=("insert",),
                )
                answer = get_assignment(channel, request, credentials)
            body = Path(work) / "get-assignment-request.bin"
            body.write_bytes(grpc_frame(request.SerializeToString()))
            before = {label: lines_in(service) for label, service in services.items()}
            labels = list(services)
            for number in range(arguments.rounds):
                if arguments.fixed_rate:
                    url = f"http://127.0.0.1:{{}}/{METHOD}"
                    for label, cpu in at_fixed_rate(
                        log, services, url, body, credentials.authorization, arguments.fixed_rate
                    ).items():
                        cpu_per_call.setdefault(label, []).append(cpu)
                        rates.setdefault(label, []).append(1e6 / cpu)  # calls per CPU second
                    continue
                # Each configuration goes first in turn: none always follows the same one.
                turn = number % len(labels)
                for label in labels[turn:] + labels[:turn]:
                    service = services[label]
                    figure = measure_unary(
                        log,
                        f"{label}: GetAssignment",
                        service.server,
                        f"http://127.0.0.1:{service.grpc_port}/{METHOD}",
                        body,
                        answer.ByteSize(),
                        1,
                        credentials.authorization,
                    )
                    rates.setdefault(label, []).append(figure.per_second)
                    if figure.cpu is not None:
                        cpu = figure.cpu.process / figure.per_second * 1e6
                        cpu_per_call.setdefault(label, []).append(cpu)
            written = {
                label: lines_in(service) - before[label] for label, service in services.items()
            }
            notes.append(
                "log lines written during the measurements: "
                + ", ".join(f"{label} {count:,}" for label, count in written.items())
            )
            notes.append(metrics_answer(metrics_port))
        # The servers have stopped: the traced one has exported what it still held.
        calls = arguments.rounds * int(harness.H2LOAD_ARGS[1])
        if sink.spans == 0:
            raise BenchError("the traced server exported no span")
        log.passed(
            f"{TRACING}: the sink received {sink.spans:,} spans for {calls:,} measured calls "
            "(plus the set-up's)"
        )
    except (BenchError, grpc.RpcError) as error:
        print(f"[bench] FAILED: {error}", file=sys.stderr)
        return 1
    off = median(rates[OFF])
    rows = [
        Comparison(f"GetAssignment, {label}", "req/s", median(rates[label]), "all off", off, target)
        for label, target in ((METRICS, METRICS_TARGET), (TRACING, TRACING_TARGET))
    ]
    notes.insert(
        0,
        "req/s of each round: "
        + "; ".join(f"{label} " + ", ".join(f"{r:,.0f}" for r in rates[label]) for label in rates),
    )
    notes.insert(
        1,
        "server CPU per call, median: "
        + "; ".join(f"{label} {median(cpu):,.0f} µs" for label, cpu in cpu_per_call.items()),
    )
    notes.insert(
        2,
        "server CPU per call of each round (µs): "
        + "; ".join(
            f"{label} " + ", ".join(f"{cpu:,.0f}" for cpu in figures)
            for label, figures in cpu_per_call.items()
        ),
    )
    if busy_before > BUSY_BEFORE:
        notes.insert(0, f"{busy_before:.2f} cores were busy before the run: something else ran")
    facts = [
        ("Date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        (
            "Command",
            "`" + " ".join([".venv/bin/python bench/observability.py", *sys.argv[1:]]) + "`",
        ),
        ("Machine", f"{os.cpu_count()} CPUs; {busy_before:.2f} cores busy in the second before"),
        ("Load", f"h2load {' '.join(harness.H2LOAD_ARGS)}, {arguments.rounds} rounds, medians"),
    ]
    title = "Benchmark: metrics, access log and tracing against everything off"
    return publish_verdict(REPORT_PATH, title, rows, facts, log.checks, notes, HEADER, REPO)


if __name__ == "__main__":
    sys.exit(main())
