"""GetAssignment through HAProxy with 1, 2 and 3 replicas beside one replica direct, and the
cost of the proxy hop, in one run (README "Scaling").

1. The local cluster of `make cluster` (scripts/local_cluster.py): three `serve` replicas on a
   fresh PostgreSQL database through PgBouncer in transaction mode, HAProxy in front; one
   segment, --preload assignments, and a customer in --segments segments, written through
   HAProxy.
2. h2load (-n 30000 -c 16 -m 10 -t 1, as bench/run.py) on GetAssignment: replica r1 direct,
   then through HAProxy with 1, 2 and 3 replicas in rotation (the others put in maintenance
   on HAProxy's stats socket); GetAssignment of a server straight on PostgreSQL with the
   statement cache on (100), beside the cluster's cache 0 behind PgBouncer; and ListSegments
   of the customer (the segments of a customer), r1 direct. Every call carries a token
   signed with the cluster's secret, and every call must come back with the expected message.
3. A table, also written to bench/reports/scaleout-latest.md: req/s, HAProxy's CPU per call
   (the proxy hop's cost), the replicas' CPU per call, and how busy the machine was.

Usage: make bench-scaleout, or .venv/bin/python bench/scaleout.py [--rounds N]. PostgreSQL
from env PGURL (default postgresql://postgres@127.0.0.1:5432/test); the cluster gets a
database of its own there, dropped at the end. Exit status 1 when a step fails.
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
from dataclasses import dataclass
from pathlib import Path

import grpc
from customersegment.v1 import assignment_pb2, segment_pb2
from harness import (
    H2LOAD_ARGS,
    JWT_SECRET_ENV,
    BenchError,
    Child,
    CpuSample,
    fetch_value,
    free_port,
    grpc_frame,
    h2load,
    port_accepts,
    require_h2load,
    run_sql,
    wait_until,
    with_database,
)

from customer_segments.auth.tokens import issue_token
from customer_segments.client import BulkUpsertItem, CustomerSegmentsClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import local_cluster  # noqa: E402  (scripts/ is not a package)

DEFAULT_PGURL = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE = "cs_scaleout_bench"
TENANT = "bench"
SEGMENT_ID = "bench-segment"
GET_CUSTOMER = "cust-5000"
REPORT = REPO / "bench" / "reports" / "scaleout-latest.md"
GET_METHOD = "customersegment.v1.CustomerAssignmentService/GetAssignment"
LIST_SEGMENTS_METHOD = "customersegment.v1.SegmentService/ListSegments"
DIRECT = "r1 direct"


@dataclass(frozen=True)
class Figure:
    label: str
    per_second: float
    # CPU seconds per call, in µs, of HAProxy, of the replicas together, of PgBouncer and of
    # the PostgreSQL backends of the cluster's database.
    haproxy_us: float
    replicas_us: float
    pgbouncer_us: float
    postgres_us: float
    machine_cores: float


def _cpu(pids: list[int]) -> float:
    """CPU seconds of these processes and their descendants so far."""
    return sum(CpuSample.take(pid).process_s for pid in pids)


def _backends(database_url: str) -> set[int]:
    """The PostgreSQL backends serving the cluster's database: PgBouncer's server connections
    (other databases of a shared server are not counted)."""
    name = database_url.rsplit("/", 1)[1]
    pids = fetch_value(
        with_database(database_url, "postgres"),
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )
    return {int(pid) for pid in pids.split(",") if pid.isdigit()}


def _ticks_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended in the meantime
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    cluster: local_cluster.Cluster,
    label: str,
    url: str,
    body: Path,
    response_bytes: int,
    authorization: str,
    servers: list[int] | None = None,
) -> Figure:
    """h2load against `url`; the CPU of `servers` (default: the replicas) counts as theirs."""
    haproxy = cluster.pid("haproxy")
    pgbouncer = cluster.pid("pgbouncer")
    replicas = [pid for r in cluster.layout.replicas if (pid := cluster.pid(r.name)) is not None]
    if haproxy is None or pgbouncer is None or len(replicas) != len(cluster.layout.replicas):
        raise BenchError(f"{label}: a process of the cluster is gone")
    if servers is not None:
        replicas = servers
    print(f"[bench] {label}: h2load {' '.join(H2LOAD_ARGS)} {url}", flush=True)

    def sample() -> list[float]:
        return [_cpu([haproxy]), _cpu(replicas), _cpu([pgbouncer])]

    backends_before = _backends(cluster.layout.database_url)
    postgres_before = {pid: _ticks_s(pid) for pid in backends_before}
    before, machine_before = sample(), CpuSample.take(os.getpid())
    result = h2load(url, body, authorization)
    after, machine_after = sample(), CpuSample.take(os.getpid())
    # A backend that started during the run counts all its CPU; one that ended is missed.
    backends_after = _backends(cluster.layout.database_url) | backends_before
    before.append(sum(postgres_before.values()))
    after.append(sum(_ticks_s(pid) for pid in backends_after))
    per_call = [
        (late - early) / result.requests * 1e6 for early, late in zip(before, after, strict=True)
    ]
    problems = result.problems(response_bytes)
    if problems:
        raise BenchError(f"{label}: " + "; ".join(problems))
    return Figure(
        label,
        result.requests_per_second,
        haproxy_us=per_call[0],
        replicas_us=per_call[1],
        pgbouncer_us=per_call[2],
        postgres_us=per_call[3],
        machine_cores=machine_before.until(machine_after).machine,
    )


def serve_only(cluster: local_cluster.Cluster, count: int) -> None:
    """HAProxy sends gRPC calls to the first `count` replicas only (the others in maintenance)."""
    for index, replica in enumerate(cluster.layout.replicas):
        verb = "enable" if index < count else "disable"
        cluster.haproxy_command(f"{verb} server grpc/{replica.name}")
    wanted = {r.name for r in cluster.layout.replicas[:count]}
    # An enabled replica is UP after its checks pass again ("UP 1/2" before).
    deadline = time.monotonic() + 60
    while True:
        states = cluster.server_states()
        if {name for name, state in states.items() if state == "UP"} == wanted:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"HAProxy shows {states}, not {sorted(wanted)} UP")
        time.sleep(0.1)


async def preload(target: str, token: str, assignments: int, segments: int) -> None:
    async with CustomerSegmentsClient(target, token=token) as client:
        await client.upsert_segment(TENANT, SEGMENT_ID, name={"en": "Bench"}, site_code="main")
        items = (BulkUpsertItem(f"cust-{n}") for n in range(assignments))
        async for result in client.stream_upsert_assignments(TENANT, SEGMENT_ID, items):
            if not result.ok:
                raise BenchError(f"preload: item {result.index}: {result.message}")
        for n in range(1, segments):
            segment = f"bench-extra-{n}"
            await client.upsert_segment(TENANT, segment, name={"en": segment}, site_code="main")
            await client.upsert_assignment(TENANT, segment, GET_CUSTOMER)


def answer_sizes(target: str, authorization: str) -> tuple[bytes, int, bytes, int]:
    """The two requests, framed for h2load, and the size of their answers (checked per call)."""
    metadata = (("authorization", authorization),)
    get = assignment_pb2.GetAssignmentRequest(
        tenant=TENANT, segment_id=SEGMENT_ID, customer_id=GET_CUSTOMER
    )
    listing = segment_pb2.ListSegmentsRequest(tenant=TENANT, customer_id=GET_CUSTOMER)
    with grpc.insecure_channel(target) as channel:
        got = channel.unary_unary(
            f"/{GET_METHOD}",
            request_serializer=assignment_pb2.GetAssignmentRequest.SerializeToString,
            response_deserializer=assignment_pb2.GetAssignmentResponse.FromString,
        )(get, metadata=metadata, timeout=30)
        listed = channel.unary_unary(
            f"/{LIST_SEGMENTS_METHOD}",
            request_serializer=segment_pb2.ListSegmentsRequest.SerializeToString,
            response_deserializer=segment_pb2.ListSegmentsResponse.FromString,
        )(listing, metadata=metadata, timeout=30)
    return (
        grpc_frame(get.SerializeToString()),
        got.ByteSize(),
        grpc_frame(listing.SerializeToString()),
        listed.ByteSize(),
    )


def report(figures: dict[str, list[Figure]], notes: list[str]) -> str:
    def median(label: str, field: str) -> float:
        return float(statistics.median(getattr(f, field) for f in figures[label]))

    direct = median(DIRECT, "per_second")
    lines = [
        "# Scale-out: GetAssignment through HAProxy",
        "",
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"`.venv/bin/python bench/scaleout.py`, on {os.cpu_count()} cores shared by PostgreSQL, "
        "PgBouncer, HAProxy, the replicas and h2load (and other users of the machine).",
        "",
        "| path | req/s | vs r1 direct | CPU per call: HAProxy | replicas | PgBouncer "
        "| PostgreSQL | machine busy (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in figures:
        rate = median(label, "per_second")
        lines.append(
            f"| {label} | {rate:,.0f} | {rate / direct:.0%} "
            + "".join(
                f"| {median(label, field):.0f} µs "
                for field in ("haproxy_us", "replicas_us", "pgbouncer_us", "postgres_us")
            )
            + f"| {median(label, 'machine_cores'):.2f} |"
        )
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="h2load runs per path (median)")
    parser.add_argument("--preload", type=int, default=10_000, help="assignments to preload")
    parser.add_argument("--segments", type=int, default=5, help="segments of the customer")
    arguments = parser.parse_args()
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    figures: dict[str, list[Figure]] = {}
    notes: list[str] = []
    try:
        require_h2load()
        local_cluster.require_tools()
        idle = CpuSample.take(os.getpid())
        time.sleep(1)
        notes.append(
            f"machine busy before the run: {idle.until(CpuSample.take(os.getpid())).machine:.2f} "
            "cores (other work skews every figure)"
        )
        run_sql(pg_url, f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        with tempfile.TemporaryDirectory(prefix="cs-scaleout-") as work:
            cluster = local_cluster.Cluster(
                local_cluster.plan(Path(work), database_url=with_database(pg_url, DATABASE))
            )
            try:
                print("[bench] starting the cluster", flush=True)
                cluster.start()
                secret = (cluster.run_dir / "jwt-secret").read_text().strip()
                token = issue_token(
                    secret.encode(),
                    tenant=TENANT,
                    scopes=("customersegment.segment_read", "customersegment.segment_manage"),
                    ttl_seconds=4 * 3600,
                )
                authorization = f"Bearer {token}"
                layout = cluster.layout
                print(f"[bench] preloading {arguments.preload:,} assignments", flush=True)
                asyncio.run(
                    preload(layout.grpc_target, token, arguments.preload, arguments.segments)
                )
                get, get_bytes, listing, listing_bytes = answer_sizes(
                    layout.grpc_target, authorization
                )
                get_body, list_body = Path(work) / "get.bin", Path(work) / "list.bin"
                get_body.write_bytes(get)
                list_body.write_bytes(listing)

                def run(
                    label: str, url: str, body: Path, size: int, servers: list[int] | None = None
                ) -> None:
                    figure = measure(cluster, label, url, body, size, authorization, servers)
                    figures.setdefault(label, []).append(figure)

                direct = f"http://{layout.bind}:{layout.replica('r1').grpc_port}"
                proxied = f"http://{layout.grpc_target}"
                paths = [
                    (DIRECT, 0, direct),
                    ("HAProxy, 1 replica", 1, proxied),
                    ("HAProxy, 2 replicas", 2, proxied),
                    ("HAProxy, 3 replicas", 3, proxied),
                ]
                for number in range(arguments.rounds):
                    turn = number % len(paths)  # each path goes first in turn
                    for label, replicas, url in paths[turn:] + paths[:turn]:
                        if replicas:
                            serve_only(cluster, replicas)
                        run(label, f"{url}/{GET_METHOD}", get_body, get_bytes)
                # Beside them, a server straight on PostgreSQL with the statement cache on:
                # what PgBouncer in transaction mode (cache 0) costs PostgreSQL and the server.
                port, http_port = free_port(), free_port()
                alone = Child(
                    "alone",
                    [
                        str(local_cluster.CLI),
                        "serve",
                        "--grpc-host",
                        layout.bind,
                        "--grpc-port",
                        str(port),
                        "--http-host",
                        layout.bind,
                        "--http-port",
                        str(http_port),
                        "--metrics-port",
                        "0",
                        "--data-dir",
                        str(Path(work) / "alone"),
                        "--database-url",
                        layout.database_url,
                    ],
                    Path(work),
                    env={JWT_SECRET_ENV: secret},
                )
                try:
                    wait_until(
                        lambda: port_accepts(port), "the server without PgBouncer", alone, 120
                    )
                    for _ in range(arguments.rounds):
                        run(
                            "PostgreSQL direct, statement cache 100 (no PgBouncer)",
                            f"http://{layout.bind}:{port}/{GET_METHOD}",
                            get_body,
                            get_bytes,
                            [alone.pid],
                        )
                finally:
                    alone.stop()
                for _ in range(arguments.rounds):
                    run(
                        f"ListSegments of a customer in {arguments.segments} segments, r1 direct",
                        f"{direct}/{LIST_SEGMENTS_METHOD}",
                        list_body,
                        listing_bytes,
                    )
            finally:
                cluster.stop()
        run_sql(pg_url, f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    except (BenchError, local_cluster.ClusterError, grpc.RpcError) as error:
        print(f"[bench] FAILED: {error}", file=sys.stderr)
        return 1
    notes.append(
        "HAProxy CPU per call is the proxy hop's cost; the replicas' CPU per call through it "
        "includes what the HTTP/2 connections from HAProxy cost them"
    )
    text = report(figures, notes)
    REPORT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
