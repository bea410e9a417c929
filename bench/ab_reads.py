"""Server CPU per call of the hot reads, A/B: two builds of the service served side by side on
one PostgreSQL database, measured in turns (old and new interleaved, the first of each round
alternating), and the ceiling program (bench/ceiling/grpc_ceiling.py pg) beside them.

For each build and round: the segments of a customer (ListSegments with customer_id, 5 of 20)
and GetAssignment under h2load (the load of bench/ceiling/run.sh), and a REST GET of one
assignment under wrk; the figure is the server's CPU time (its process tree; builds before
the in-process channel ran REST in a gateway process of their own) over the calls served.
Medians of the rounds.

Usage: .venv/bin/python bench/ab_reads.py [--base-src DIR] [--rounds N] [--preload N]
  --base-src: the `src` directory of the other build (e.g. from `git archive`); without it the
  worktree's build is measured alone (with the ceiling).
Env PGURL as bench/run.py. Extra serve flags of both builds: BENCH_SERVE_ARGS.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import grpc
import harness
from customersegment.v1 import assignment_pb2, segment_pb2
from gateway import fetch_assignment, wrk
from harness import (
    Child,
    Credentials,
    _process_tree,
    free_port,
    grpc_frame,
    h2load,
    port_accepts,
    run_sql,
    wait_until,
)
from hot_paths import (
    GET_METHOD,
    LIST_METHOD,
    preload,
    segments_of_customer,
)
from run import (
    CEILING_FILL_SQL,
    DEFAULT_PGURL,
    GET_CUSTOMER,
    PYTHON,
    REPO,
    SEGMENT_ID,
    TENANT,
    Log,
    get_assignment,
    load_echo_stubs,
    start_service,
    wait_until_serving,
)


def cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def per_call_h2load(pid: int, url: str, body: Path, authorization: str | None) -> float:
    before = cpu_seconds(pid)
    result = h2load(url, body, authorization)
    used = cpu_seconds(pid) - before
    if result.status_2xx != result.requests:
        raise SystemExit(f"{url}: {result.status_2xx} of {result.requests} 2xx")
    return used / result.requests * 1e6


def per_call_wrk(pid: int, url: str, authorization: str) -> float:
    before = cpu_seconds(pid)
    result = wrk(url, authorization)
    used = cpu_seconds(pid) - before
    if result.problems():
        raise SystemExit(f"{url}: {result.problems()}")
    return used / result.requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--preload", type=int, default=20_000)
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--paths", default="segments,get,rest")
    parser.add_argument("--hold", action="store_true", help="serve for py-spy until SIGTERM")
    parser.add_argument("--requests", type=int, default=10_000, help="per h2load run")
    arguments = parser.parse_args()
    # Fewer requests than bench/ceiling/run.sh, the same connections and streams.
    harness.H2LOAD_ARGS = ("-n", str(arguments.requests), *harness.H2LOAD_ARGS[2:])
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    paths = arguments.paths.split(",")
    log = Log()
    credentials = Credentials.for_tenant(TENANT)
    authorization = credentials.authorization
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="reads-ab-") as directory, ExitStack() as stack:
        work = Path(directory)
        new = start_service(stack, log, pg_url, "reads_ab", work, 1, credentials, name="new")
        wait_until_serving(new.server, new.grpc_port)
        preload(log, new, credentials, arguments.preload)
        services = {"new": new}
        for number, base_src in enumerate(arguments.base_src):
            name = f"old{number}"
            services[name] = start_service(
                stack,
                log,
                pg_url,
                "reads_ab",
                work,
                1,
                credentials,
                new.database_url,
                name=name,
                env={"PYTHONPATH": str(base_src.resolve())},
            )
            wait_until_serving(services[name].server, services[name].grpc_port)
        get_request = assignment_pb2.GetAssignmentRequest(
            tenant=TENANT, segment_id=SEGMENT_ID, customer_id=GET_CUSTOMER
        )
        list_request = segment_pb2.ListSegmentsRequest(tenant=TENANT, customer_id=GET_CUSTOMER)
        get_body, list_body = work / "get.bin", work / "list.bin"
        get_body.write_bytes(grpc_frame(get_request.SerializeToString()))
        list_body.write_bytes(grpc_frame(list_request.SerializeToString()))
        rest_path = f"/customer-segment/{TENANT}/segments/{SEGMENT_ID}/customers/{GET_CUSTOMER}"
        for service in services.values():
            wait_until(partial(port_accepts, service.http_port), "gateway", service.server)
            with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                get_assignment(channel, get_request, credentials)
                segments_of_customer(channel, list_request, credentials)
            fetch_assignment(f"http://127.0.0.1:{service.http_port}{rest_path}", credentials)
        ceiling = None
        if not arguments.no_ceiling:
            ceiling_dir = REPO / "bench" / "ceiling"
            stubs = work / "ceiling-gen"
            echo_pb2, _ = load_echo_stubs(ceiling_dir, stubs)
            request = echo_pb2.Req(tenant="acme", segment_id="seg-1", customer_id="cust-42")
            ceiling_body = work / "ceiling.bin"
            ceiling_body.write_bytes(grpc_frame(request.SerializeToString()))
            run_sql(pg_url, CEILING_FILL_SQL)
            port = free_port()
            argv = [PYTHON, str(ceiling_dir / "grpc_ceiling.py"), "pg", str(port)]
            ceiling = Child("ceiling", argv, work, {"CEILING_GEN": str(stubs), "PGURL": pg_url})
            stack.callback(ceiling.stop)
            wait_until(partial(port_accepts, port), "ceiling", ceiling)
            ceiling_url = f"http://127.0.0.1:{port}/ceiling.v1.Echo/Get"
        if arguments.hold:  # for py-spy: serve until interrupted
            for name, service in services.items():
                print(
                    f"{name}: pid {service.server.pid} grpc {service.grpc_port} "
                    f"http {service.http_port} bodies {list_body} {get_body}",
                    flush=True,
                )
            if ceiling is not None:
                print(f"ceiling: pid {ceiling.pid} {ceiling_url} {ceiling_body}", flush=True)
            print(f"authorization: {authorization}", flush=True)
            stops = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stops)
            signal.sigwait(stops)
            return 0
        names = list(services)
        for round_number in range(arguments.rounds):
            shift = round_number % len(names)
            order = names[shift:] + names[:shift]
            for name in order:
                service = services[name]
                pid, grpc_url = service.server.pid, f"http://127.0.0.1:{service.grpc_port}"
                measured = figures.setdefault(name, {})
                if "segments" in paths:
                    measured.setdefault("segments", []).append(
                        per_call_h2load(pid, f"{grpc_url}/{LIST_METHOD}", list_body, authorization)
                    )
                if "get" in paths:
                    measured.setdefault("get", []).append(
                        per_call_h2load(pid, f"{grpc_url}/{GET_METHOD}", get_body, authorization)
                    )
                if "rest" in paths:
                    rest_url = f"http://127.0.0.1:{service.http_port}{rest_path}"
                    measured.setdefault("rest", []).append(
                        per_call_wrk(pid, rest_url, authorization)
                    )
                print(name, {k: round(v[-1]) for k, v in measured.items()}, flush=True)
            if ceiling is not None:
                figures.setdefault("ceiling", {}).setdefault("get", []).append(
                    per_call_h2load(ceiling.pid, ceiling_url, ceiling_body, None)
                )
        print("\nserver CPU us per call, median of", arguments.rounds, "rounds")
        for name, measured in figures.items():
            cells = ", ".join(
                f"{path} {statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
                for path, values in measured.items()
            )
            print(f"  {name}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
