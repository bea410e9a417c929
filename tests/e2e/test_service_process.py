"""The `customer-segments` command as a user runs it: a real process, grpcurl, signals."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import fresh_postgres_database
from tests.helpers import next_results

BIN = Path(sys.executable).parent
CLI = str(BIN / "customer-segments")
GRPCURL = str(BIN / "grpcurl")


_HANDED_OUT: set[int] = set()
_HANDING_OUT = threading.Lock()


def _ports_of_this_worker(low: int = 20_000, high: int = 32_000) -> tuple[int, int]:
    """Under pytest-xdist, each worker takes ports from a slice of its own: the set above is
    per process, and two workers must never hand out the same port."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = (high - low) // workers
    return low + worker * size, low + (worker + 1) * size


_PORTS = _ports_of_this_worker()


def free_port() -> int:
    """A port nothing listens on, never the same twice in a run, and below the kernel's
    ephemeral range (32768-60999 on Linux): a port that bind(0) picked is free again once the
    probe closes, and any outgoing connection of the machine (a database client, another
    test's server) may take it before the server under test binds it."""
    with _HANDING_OUT:
        while True:
            port = random.randrange(*_PORTS)
            if port in _HANDED_OUT:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port


# Every process of `serve` or `gateway` a test starts has metrics off or on a free_port():
# the default port (9464) would be one for all the tests running at once.
NO_METRICS = ("--metrics-port", "0")
ALL_SCOPES = "customersegment.segment_read customersegment.segment_manage"


def token(data_dir: Path, *arguments: str) -> str:
    """A development token from `customer-segments token`, as the README shows."""
    result = subprocess.run(
        [CLI, "token", "--data-dir", str(data_dir), *arguments],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def logged_process(argv: list[str], log: Path, **options: Any) -> subprocess.Popen[str]:
    """A process whose stdout and stderr go to the file `log`: a pipe nobody reads would
    fill (64 KiB of access lines) and block it."""
    with log.open("a") as output:
        return subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, text=True, **options)


class Service:
    def __init__(
        self,
        process: subprocess.Popen[str],
        port: int,
        http_port: int,
        data_dir: Path,
        log: Path,
    ) -> None:
        self.process = process
        self.log = log
        self.port = port
        self.target = f"127.0.0.1:{port}"
        self.http = f"http://127.0.0.1:{http_port}"
        self.data_dir = data_dir
        self.admin_token = token(data_dir, "--tenant", "acme", "--scope", ALL_SCOPES)

    def output(self) -> str:
        """What the service has written so far (stdout and stderr)."""
        return self.log.read_text()

    def grpcurl(self, *arguments: str, data: object | None = None, token: str | None = None) -> str:
        result = self.run_grpcurl(*arguments, data=data, token=token)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def run_grpcurl(
        self,
        *arguments: str,
        data: object | None = None,
        token: str | None = None,
        max_time: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """grpcurl with the admin token of tenant acme, unless another token is given;
        `max_time` ends the call after that many seconds (a stream that stays open)."""
        command = [
            GRPCURL,
            "-plaintext",
            "-H",
            f"authorization: Bearer {token or self.admin_token}",
        ]
        if data is not None:
            command += ["-d", json.dumps(data)]
        if max_time is not None:
            command += ["-max-time", str(max_time)]
        return subprocess.run(
            [*command, self.target, *arguments], capture_output=True, text=True, timeout=30
        )

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.admin_token}")]


# Generous: on a busy 2-core machine a start has taken over 30 s.
START_TIMEOUT_S = 120.0


def wait_for_port(port: int, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def children(pid: int, marker: bytes) -> list[int]:
    """The child processes of `pid` whose command line contains `marker`."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for child in listed:
        try:
            if marker in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except FileNotFoundError:
            continue  # exited since the listing
    return found


def workers_of(pid: int) -> list[int]:
    """The workers: forked, they carry the parent's command line."""
    return children(pid, b"serve")


def wait_until_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # A zombie has exited; only its parent's wait is missing.
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} is still running")


_MIGRATED_TEMPLATE: list[Path] = []
_MIGRATING = threading.Lock()


def pre_migrated(data_dir: Path) -> Path:
    """`data_dir` as a copy of an embedded database folder migrated once per test process: a
    test that starts many instances pays for migrating (and for importing Alembic) once, and
    each start still opens, checks and serves its own database."""
    with _MIGRATING:
        if not _MIGRATED_TEMPLATE:
            template = Path(tempfile.mkdtemp(prefix="cs-migrated-")) / "data"
            atexit.register(shutil.rmtree, template.parent, ignore_errors=True)
            migrated = subprocess.run(
                [CLI, "migrate", "--data-dir", str(template)],
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert migrated.returncode == 0, migrated.stderr
            _MIGRATED_TEMPLATE.append(template)
    shutil.copytree(_MIGRATED_TEMPLATE[0], data_dir)
    return data_dir


def start(tmp_path: Path, *extra: str) -> Service:
    port, http_port = free_port(), free_port()
    log = tmp_path / f"serve-{port}.log"
    process = logged_process(
        [
            CLI,
            "serve",
            *NO_METRICS,  # a test that wants metrics passes --metrics-port again, later
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(http_port),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            *extra,
        ],
        log,
        start_new_session=True,  # a process group of its own, as in a terminal
    )
    try:
        wait_for_port(port, process, log)
        wait_for_port(http_port, process, log)
    except AssertionError:
        process.kill()
        raise
    return Service(process, port, http_port, tmp_path / "data", log)


@contextmanager
def _running(service: Service) -> Iterator[Service]:
    try:
        yield service
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Service]:
    """An instance of the test's own, which it may stop or kill."""
    pre_migrated(tmp_path / "data")
    with _running(start(tmp_path)) as service:
        yield service


@pytest.fixture(scope="module")
def shared_embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One instance, started on an empty data folder as a user starts it, for the tests that
    neither stop nor reconfigure it (each on segments of its own)."""
    with _running(start(tmp_path_factory.mktemp("shared"))) as service:
        yield service


def test_grpcurl_walkthrough_on_embedded_database(shared_embedded: Service) -> None:
    grpcurl_walkthrough(shared_embedded)


def grpcurl_walkthrough(embedded: Service) -> None:
    """The README's grpcurl walkthrough against `embedded` (also run through the cluster's
    HAProxy, tests/e2e/test_cluster.py)."""
    services = embedded.grpcurl("list").split()
    assert services == [
        "customersegment.v1.CustomerAssignmentService",
        "customersegment.v1.DirectoryService",
        "customersegment.v1.EventService",
        "customersegment.v1.SegmentService",
        "customersegment.v1.WebhookService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    described = embedded.grpcurl("describe", "customersegment.v1.CustomerAssignmentService")
    # One request and one response message per RPC (buf's STANDARD lint rules).
    assert (
        "rpc SearchAssignments ( .customersegment.v1.SearchAssignmentsRequest ) returns"
        " ( .customersegment.v1.SearchAssignmentsResponse )" in described
    )
    # Reflection serves the google.api.http annotations (and google/api/*.proto with them).
    assert (
        'option (.google.api.http) = { get:"/customer-segment/{tenant}/segments/{segment_id}'
        '/customers/{customer_id}"' in described
    ), described
    assert "SEGMENT_STATUS_ACTIVE = 1;" in embedded.grpcurl(
        "describe", "customersegment.v1.SegmentStatus"
    )
    assert '"status": "SERVING"' in embedded.grpcurl("grpc.health.v1.Health/Check")
    embedded.grpcurl(
        "customersegment.v1.SegmentService/CreateSegment",
        data={
            "tenant": "acme",
            "segment": {
                "id": "gold",
                "name": {"en": "Gold"},
                "siteCode": "main",
                "status": "SEGMENT_STATUS_ACTIVE",
                "validity": {"startTime": "2024-01-01T00:00:00Z"},
            },
        },
    )
    created = json.loads(
        embedded.grpcurl(
            "customersegment.v1.CustomerAssignmentService/UpsertAssignment",
            data={
                "tenant": "acme",
                "segmentId": "gold",
                "customerId": "c1",
                "legalEntityId": "le1",
                "mixinsJson": '{"n":20}',
            },
        )
    )
    assert created["created"] is True
    # The README's watch: the stream stays open, so grpcurl ends it at its -max-time.
    watched = embedded.run_grpcurl(
        "customersegment.v1.EventService/WatchEvents",
        data={"tenant": "acme", "segmentId": "gold"},
        max_time=5,  # generous: grpcurl connects, reflects, then gets the stored event
    )
    first, _ = json.JSONDecoder().raw_decode(watched.stdout.strip())
    assert first["event"]["type"] == "customer-segment.segment-created", watched.stderr
    # grpcurl prints the proto field names (payload_json).
    assert json.loads(first["event"]["payload_json"])["validity"] == {
        "from": "2024-01-01T00:00:00.000Z"
    }
    items = [{"customerId": f"c{n}"} for n in range(1000)]
    output = embedded.grpcurl(
        "customersegment.v1.CustomerAssignmentService/BulkUpsertAssignments",
        data={"tenant": "acme", "segmentId": "gold", "items": items},
    )
    decoder = json.JSONDecoder()
    results, position = [], 0
    while position < len(output.strip()):
        message, end = decoder.raw_decode(output, position)
        results += message["results"]
        position = end + 1
    assert len(results) == 1000 and [r["index"] for r in results] == list(range(1, 1001))
    assert {r["code"] for r in results} == {201}  # c1 (B2C) is another key than c1 of le1
    got = json.loads(
        embedded.grpcurl(
            "customersegment.v1.CustomerAssignmentService/GetAssignment",
            data={
                "tenant": "acme",
                "segmentId": "gold",
                "customerId": "c1",
                "legalEntityId": "le1",
            },
        )
    )
    assert json.loads(got["assignment"]["mixins_json"]) == {"n": 20}


def test_sigterm_drains_in_flight_calls_and_reports_not_serving(embedded: Service) -> None:
    async def scenario() -> None:
        async with grpc.aio.insecure_channel(embedded.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await asyncio.wait_for(health.Check(health_pb2.HealthCheckRequest()), 10)
            watch = health.Watch(health_pb2.HealthCheckRequest())
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            from customersegment.v1 import segment_pb2, segment_pb2_grpc

            await segment_pb2_grpc.SegmentServiceStub(channel).CreateSegment(
                segment_pb2.CreateSegmentRequest(
                    tenant="acme",
                    segment=segment_pb2.Segment(id="s", name={"en": "S"}, site_code="m"),
                ),
                metadata=embedded.metadata,
            )
            stream = assignment_pb2_grpc.CustomerAssignmentServiceStub(
                channel
            ).StreamUpsertAssignments(None, metadata=embedded.metadata)
            item = assignment_pb2.BulkUpsertItem
            await stream.write(
                assignment_pb2.StreamUpsertAssignmentsRequest(
                    tenant="acme", segment_id="s", items=[item(customer_id="a")]
                )
            )
            assert [r.code for r in (await next_results(stream)).results] == [201]
            embedded.process.send_signal(signal.SIGTERM)
            assert (
                await asyncio.wait_for(watch.read(), 10)
            ).status == health_pb2.HealthCheckResponse.NOT_SERVING
            # The call that was in flight when the signal came still completes.
            await stream.write(
                assignment_pb2.StreamUpsertAssignmentsRequest(items=[item(customer_id="b")])
            )
            await stream.done_writing()
            assert [r.code for r in (await next_results(stream)).results] == [201]
            # ... to its end: a client that closes before the status arrives makes gRPC log
            # a traceback of the status it could not send.
            assert await stream.read() == grpc.aio.EOF  # type: ignore[attr-defined]  # not in grpc-stubs
            assert await stream.code() == grpc.StatusCode.OK

    asyncio.run(scenario())
    assert embedded.process.wait(timeout=20) == 0
    output = embedded.output()
    assert "stopped" in output and "Traceback" not in output


@pytest.fixture
def empty_postgres_database() -> Iterator[str]:
    with fresh_postgres_database("cs_e2e") as url:
        yield url


def test_postgres_needs_migrate_then_serves(tmp_path: Path, empty_postgres_database: str) -> None:
    url = empty_postgres_database
    refused = subprocess.run(
        [CLI, "serve", *NO_METRICS, "--grpc-port", str(free_port()), "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "customer-segments migrate" in refused.stderr and "Traceback" not in refused.stderr
    migrated = subprocess.run(
        [CLI, "migrate", "--database-url", url], capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    again = subprocess.run(
        [CLI, "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CUSTOMER_SEGMENTS_DATABASE_URL": url},
    )
    assert again.returncode == 0, again.stderr
    service = start(tmp_path, "--database-url", url)
    try:
        service.grpcurl(
            "customersegment.v1.SegmentService/CreateSegment",
            data={
                "tenant": "acme",
                "segment": {"id": "gold", "name": {"en": "Gold"}, "siteCode": "main"},
            },
        )
        first = json.loads(
            service.grpcurl(
                "customersegment.v1.CustomerAssignmentService/UpsertAssignment",
                data={"tenant": "acme", "segmentId": "gold", "customerId": "c1"},
            )
        )
        assert first["created"] is True
        assert not (tmp_path / "data" / "customer-segments.db").exists()
    finally:
        service.process.terminate()
        assert service.process.wait(timeout=20) == 0


def test_bad_settings_are_refused_without_traceback(tmp_path: Path) -> None:
    for arguments in (
        ["--grpc-port", "http"],
        ["--database-url", "mysql://x@y/z"],
        ["--jwks", "http://idp.example/.well-known/jwks.json"],
    ):
        result = subprocess.run(
            [CLI, "serve", *NO_METRICS, "--data-dir", str(tmp_path), *arguments],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "customer-segments:" in result.stderr and "Traceback" not in result.stderr


def test_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    service = start(tmp_path, "--workers", "2")
    try:
        deadline = time.monotonic() + 20
        while len(workers_of(service.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = workers_of(service.process.pid)
        assert len(workers) == 2
        service.grpcurl(
            "customersegment.v1.SegmentService/CreateSegment",
            data={
                "tenant": "acme",
                "segment": {"id": "gold", "name": {"en": "Gold"}, "siteCode": "main"},
            },
        )
        # Separate connections (grpcurl runs) land on either worker; all see one database.
        for n in range(6):
            service.grpcurl(
                "customersegment.v1.CustomerAssignmentService/UpsertAssignment",
                data={"tenant": "acme", "segmentId": "gold", "customerId": f"c{n}"},
            )
        listed = json.loads(
            service.grpcurl(
                "customersegment.v1.CustomerAssignmentService/ListAssignments",
                data={"tenant": "acme", "segmentId": "gold", "includeTotalCount": True},
            )
        )
        assert listed["total_count"] == "6"
    finally:
        service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            CLI,
            "serve",
            *NO_METRICS,
            "--workers",
            "2",
            "--grpc-port",
            "0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--workers needs a fixed --grpc-port" in result.stderr


def test_rest_gateway_in_serve_and_on_its_own(shared_embedded: Service) -> None:
    embedded = shared_embedded
    embedded.grpcurl(
        "customersegment.v1.SegmentService/CreateSegment",
        data={
            "tenant": "acme",
            "segment": {"id": "silver", "name": {"en": "Silver"}, "siteCode": "main"},
        },
    )
    http_port = free_port()
    log = embedded.log.with_name("gateway.log")
    standalone = logged_process(
        [
            CLI,
            "gateway",
            *NO_METRICS,
            "--grpc-target",
            embedded.target,
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(http_port),
        ],
        log,
    )
    try:
        wait_for_port(http_port, standalone, log)
        url = "/customer-segment/acme/segments/silver/customers/c1"
        authorization = {"Authorization": f"Bearer {embedded.admin_token}"}
        created = urllib.request.urlopen(
            urllib.request.Request(
                f"{embedded.http}{url}",
                data=b"{}",
                method="PUT",
                headers={**authorization, "Content-Type": "application/json"},
            )
        )
        assert created.status == 201
        got = urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{http_port}{url}", headers=authorization)
        )
        assert json.loads(got.read())["customer"] == {"id": "c1"}
    finally:
        standalone.terminate()
        assert standalone.wait(timeout=20) == 0


def test_tokens_from_the_token_command_and_what_the_service_refuses(embedded: Service) -> None:
    secret_file = embedded.data_dir / "jwt-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    # Operators need no token for reflection and health.
    bare = [GRPCURL, "-plaintext", embedded.target]
    listed = subprocess.run([*bare, "list"], capture_output=True, text=True, timeout=30)
    assert "customersegment.v1.SegmentService" in listed.stdout
    create = "customersegment.v1.SegmentService/CreateSegment"
    segment = {"tenant": "acme", "segment": {"id": "gold", "name": {"en": "G"}, "siteCode": "m"}}
    no_token = subprocess.run(
        [GRPCURL, "-plaintext", "-d", json.dumps(segment), embedded.target, create],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Code: Unauthenticated" in no_token.stderr
    other_tenant = token(embedded.data_dir, "--tenant", "other", "--scope", ALL_SCOPES)
    refused = embedded.run_grpcurl(create, data=segment, token=other_tenant)
    assert "Code: PermissionDenied" in refused.stderr and "tenant 'acme'" in refused.stderr
    reader = token(embedded.data_dir, "--tenant", "acme", "--scope", "customersegment.segment_read")
    refused = embedded.run_grpcurl(create, data=segment, token=reader)
    assert "Code: PermissionDenied" in refused.stderr and "segment_manage" in refused.stderr
    embedded.grpcurl(create, data=segment)
    embedded.process.send_signal(signal.SIGTERM)
    assert embedded.process.wait(timeout=20) == 0
    log = embedded.output()
    assert "write CreateSegment tenant=acme" in log
    assert embedded.admin_token not in log and other_tenant not in log and reader not in log


def rest_get_status(service: Service, path: str) -> int:
    request = urllib.request.Request(
        f"{service.http}{path}", headers={"Authorization": f"Bearer {service.admin_token}"}
    )
    try:
        return int(urllib.request.urlopen(request, timeout=10).status)
    except urllib.error.HTTPError as error:
        return error.code


def test_rest_is_served_in_the_servers_process_and_ends_with_it(embedded: Service) -> None:
    """No gateway process: the REST port is the server's own (grpc/in_process.py)."""
    assert children(embedded.process.pid, b"") == []
    assert rest_get_status(embedded, "/customer-segment/acme/segments/none") == 404
    embedded.process.kill()
    embedded.process.wait(timeout=10)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(embedded.http.rsplit(":", 1)[1]))) != 0


def test_a_taken_http_port_is_refused_without_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            [
                CLI,
                "serve",
                *NO_METRICS,
                "--grpc-port",
                str(free_port()),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(taken.getsockname()[1]),
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "customer-segments: cannot listen for REST on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_the_server_cleanly(embedded: Service) -> None:
    # A terminal's Ctrl-C: SIGINT to the whole process group.
    os.killpg(embedded.process.pid, signal.SIGINT)
    assert embedded.process.wait(timeout=30) == 0
    output = embedded.output()
    assert "Traceback" not in output and "stopped" in output


def test_the_server_runs_on_uvloop(shared_embedded: Service) -> None:
    """uvloop is the default event loop of every server process (event_loop.py says why)."""
    server = shared_embedded.process.pid
    assert "uvloop" in Path(f"/proc/{server}/maps").read_text()
