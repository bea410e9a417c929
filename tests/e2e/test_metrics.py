"""GET /metrics of a running instance: exact counts of known calls, over every process."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, segment_pb2, segment_pb2_grpc
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from tests.auth.keys import SigningKey, claims, write_jwks
from tests.conftest import fresh_postgres_database
from tests.e2e.test_service_process import (
    ALL_SCOPES,
    CLI,
    Service,
    children,
    free_port,
    rest_get_status,
    start,
    token,
    wait_until_gone,
)

# Distinctive, so that a label holding one of them shows in the scrape.
TENANT = "metricsten"
SEGMENT = "seg-metrics-7d1f"
CUSTOMERS = ("cust-metrics-a1", "cust-metrics-b2")
MISSING_CUSTOMER = "cust-metrics-missing"
IDS = (TENANT, SEGMENT, *CUSTOMERS, MISSING_CUSTOMER)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> str:
    """The scrape, once the metrics server answers (with --workers it starts after the fork)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
                text: str = answer.read().decode()
                return text
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def grpc_labels(service: str, method: str, rpc_type: str = "unary") -> dict[str, str]:
    return {"grpc_type": rpc_type, "grpc_service": service, "grpc_method": method}


ASSIGNMENTS = "customersegment.v1.CustomerAssignmentService"
SEGMENTS = "customersegment.v1.SegmentService"
SEGMENT_ROUTE = "/customer-segment/{tenant}/segments/{segmentId}"


def missing_assignment(service: Service, bearer: str | None) -> grpc.StatusCode:
    """GetAssignment of a customer not in the segment, on a connection of its own."""
    metadata = None if bearer is None else (("authorization", f"Bearer {bearer}"),)
    with grpc.insecure_channel(service.target) as opened, pytest.raises(grpc.RpcError) as failed:
        assignment_pb2_grpc.CustomerAssignmentServiceStub(opened).GetAssignment(
            assignment_pb2.GetAssignmentRequest(
                tenant=TENANT, segment_id=SEGMENT, customer_id=MISSING_CUSTOMER
            ),
            metadata=metadata,
            timeout=30,
        )
    code: grpc.StatusCode = failed.value.code()
    return code


def known_calls(service: Service) -> int:
    """Over gRPC (each call on a connection of its own, so that with --workers the kernel
    spreads them) and REST: what the tests below count. Returns the bulk call's number of
    answer messages."""
    issued = token(service.data_dir, "--tenant", TENANT, "--scope", ALL_SCOPES)
    metadata = (("authorization", f"Bearer {issued}"),)

    def channel() -> grpc.Channel:
        return grpc.insecure_channel(service.target)

    segment = json_format.ParseDict(
        {"id": SEGMENT, "name": {"en": "Metrics"}, "siteCode": "main"}, segment_pb2.Segment()
    )
    with channel() as opened:
        segment_pb2_grpc.SegmentServiceStub(opened).CreateSegment(
            segment_pb2.CreateSegmentRequest(tenant=TENANT, segment=segment),
            metadata=metadata,
            timeout=30,
        )
    for _ in range(3):
        assert missing_assignment(service, issued) == grpc.StatusCode.NOT_FOUND
    assert missing_assignment(service, None) == grpc.StatusCode.UNAUTHENTICATED
    items = [assignment_pb2.BulkUpsertItem(customer_id=customer) for customer in CUSTOMERS]
    items.append(assignment_pb2.BulkUpsertItem(customer_id=""))  # invalid: no customer id
    with channel() as opened:
        responses = list(
            assignment_pb2_grpc.CustomerAssignmentServiceStub(opened).BulkUpsertAssignments(
                assignment_pb2.BulkUpsertAssignmentsRequest(
                    tenant=TENANT, segment_id=SEGMENT, items=items
                ),
                metadata=metadata,
                timeout=30,
            )
        )
    assert [result.code for response in responses for result in response.results] == [
        201,
        201,
        400,
    ]
    for _ in range(2):
        request = urllib.request.Request(
            f"{service.http}/customer-segment/{TENANT}/segments/{SEGMENT}",
            headers={"Authorization": metadata[0][1]},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as unmatched:
        urllib.request.urlopen(f"{service.http}/no/such/{SEGMENT}", timeout=30)
    assert unmatched.value.code == 404
    return len(responses)


def expect_counts(found: Samples, workers: int, bulk_responses: int) -> None:
    get = grpc_labels(ASSIGNMENTS, "GetAssignment")
    assert value(found, "grpc_server_started_total", **get) == 4
    assert value(found, "grpc_server_msg_received_total", **get) == 3  # the refused one: none read
    assert value(found, "grpc_server_msg_sent_total", **get) == 0
    assert value(found, "grpc_server_handled_total", **get, grpc_code="NOT_FOUND") == 3
    assert value(found, "grpc_server_handled_total", **get, grpc_code="UNAUTHENTICATED") == 1
    assert value(found, "grpc_server_handling_seconds_count", **get) == 4
    create = grpc_labels(SEGMENTS, "CreateSegment")
    assert value(found, "grpc_server_handled_total", **create, grpc_code="OK") == 1
    assert value(found, "grpc_server_msg_sent_total", **create) == 1
    bulk = grpc_labels(ASSIGNMENTS, "BulkUpsertAssignments", "server_stream")
    assert value(found, "grpc_server_handled_total", **bulk, grpc_code="OK") == 1
    assert value(found, "grpc_server_msg_received_total", **bulk) == 1
    assert value(found, "grpc_server_msg_sent_total", **bulk) == bulk_responses
    # The gateway's REST GETs are gRPC calls on its local socket, counted as such.
    assert (
        value(
            found,
            "grpc_server_handled_total",
            **grpc_labels(SEGMENTS, "GetSegment"),
            grpc_code="OK",
        )
        == 2
    )
    rest = {"http_request_method": "GET", "http_route": SEGMENT_ROUTE}
    assert (
        value(
            found,
            "http_server_request_duration_seconds_count",
            **rest,
            http_response_status_code="200",
        )
        == 2
    )
    unmatched = {"http_request_method": "GET", "http_route": "UNMATCHED"}
    assert (
        value(
            found,
            "http_server_request_duration_seconds_count",
            **unmatched,
            http_response_status_code="404",
        )
        == 1
    )
    assert (
        value(found, "customer_segments_bulk_items_total", operation="upsert", outcome="created")
        == 2
    )
    assert (
        value(found, "customer_segments_bulk_items_total", operation="upsert", outcome="invalid")
        == 1
    )
    # CreateSegment, 3 GetAssignment, the bulk and 2 GetSegment from the gateway.
    assert value(found, "customer_segments_token_verifications_total", result="accepted") == 7
    assert value(found, "customer_segments_token_verifications_total", result="refused") == 1
    # Each worker's pools, summed; between calls, at most each worker's background poll (the
    # webhook dispatcher's, the outbox pruner's) holds one when the gauge is sampled.
    assert value(found, "customer_segments_db_pool_size", pool="write") == 10 * workers
    assert value(found, "customer_segments_db_pool_size", pool="read") == 10 * workers
    assert value(found, "customer_segments_db_pool_connections_in_use", pool="read") <= workers
    assert value(found, "customer_segments_db_pool_waiting", pool="write") == 0
    assert (
        value(found, "customer_segments_db_query_duration_seconds_count", operation="INSERT") >= 1
    )
    assert (
        value(found, "customer_segments_db_query_duration_seconds_count", operation="SELECT") >= 5
    )


def label_values(found: Samples) -> set[str]:
    return {label_value for _, labels in found for _, label_value in labels}


def open_metrics_directories(pid: int) -> set[Path]:
    """The metrics directories whose value files the process holds open."""
    found = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = descriptor.readlink()
        except FileNotFoundError:
            continue
        if target.parent.name.startswith("customer-segments-metrics-"):
            found.add(target.parent)
    return found


def metrics_directory(pid: int) -> Path:
    """The instance's directory, where its serving process (the first worker, or `serve`
    itself) holds its value files open once it has counted a call."""
    found = open_metrics_directories((children(pid, b"serve") or [pid])[0])
    assert len(found) == 1, found
    return found.pop()


def stop(service: Service) -> None:
    service.process.send_signal(signal.SIGTERM)
    service.process.wait(timeout=60)


@pytest.mark.parametrize(
    ("workers", "backend"),
    [(1, "sqlite"), (2, "sqlite"), pytest.param(1, "postgres", marks=pytest.mark.postgres)],
)
def test_one_scrape_counts_the_calls_of_every_process(
    tmp_path: Path, workers: int, backend: str
) -> None:
    with contextlib.ExitStack() as stack:
        database: list[str] = []
        if backend == "postgres":
            url = stack.enter_context(fresh_postgres_database("cs_metrics"))
            migrated = subprocess.run(
                [CLI, "migrate", "--database-url", url], capture_output=True, text=True, timeout=60
            )
            assert migrated.returncode == 0, migrated.stderr
            database = ["--database-url", url]
        _count_over_one_scrape(tmp_path, workers, database)


def _count_over_one_scrape(tmp_path: Path, workers: int, database: list[str]) -> None:
    metrics_port = free_port()
    service = start(
        tmp_path, "--metrics-port", str(metrics_port), "--workers", str(workers), *database
    )
    try:
        bulk_responses = known_calls(service)
        directory = metrics_directory(service.process.pid)
        assert directory.is_dir()
        found = samples(scrape(metrics_port))
        expect_counts(found, workers, bulk_responses)
        assert not [
            label_value
            for label_value in label_values(found)
            if any(given in label_value for given in IDS)
        ]
        worker_pids = children(service.process.pid, b"serve")
        assert len(worker_pids) == (workers if workers > 1 else 0)
    finally:
        stop(service)
    assert service.process.returncode == 0
    assert not directory.exists()  # removed with the instance


def test_jwks_reads_and_token_results_are_counted(tmp_path: Path) -> None:
    key = SigningKey("metrics-key", "RS256")
    write_jwks(tmp_path / "jwks.json", key)
    metrics_port = free_port()
    service = start(
        tmp_path, "--metrics-port", str(metrics_port), "--jwks", str(tmp_path / "jwks.json")
    )
    try:
        # Signed with the JWKS's key: accepted; the development secret's HS256: refused.
        assert missing_assignment(service, key.sign(claims(TENANT))) == grpc.StatusCode.NOT_FOUND
        assert missing_assignment(service, service.admin_token) == (grpc.StatusCode.UNAUTHENTICATED)
        found = samples(scrape(metrics_port))
    finally:
        stop(service)
    assert value(found, "customer_segments_jwks_refreshes_total", result="ok") == 1  # at start
    assert value(found, "customer_segments_jwks_refreshes_total", result="failed") == 0
    assert value(found, "customer_segments_token_verifications_total", result="accepted") == 1
    assert value(found, "customer_segments_token_verifications_total", result="refused") == 1


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the process listens on (from /proc: its sockets, the kernel's table)."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = descriptor.readlink().name
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_metrics_off_with_port_zero(tmp_path: Path) -> None:
    service = start(tmp_path)  # start() passes --metrics-port 0
    try:
        known_port = int(service.http.rsplit(":", 1)[1])
        # gRPC and REST, no metrics port.
        assert listening_ports(service.process.pid) == {service.port, known_port}
        # A REST request and the gRPC call it makes: nothing counted, no value file.
        assert rest_get_status(service, "/customer-segment/acme/segments/none") == 404
        assert open_metrics_directories(service.process.pid) == set()
    finally:
        stop(service)


def test_the_standalone_gateway_serves_its_own_metrics(tmp_path: Path) -> None:
    service = start(tmp_path)
    metrics_port, http_port = free_port(), free_port()
    gateway = subprocess.Popen(
        [
            *(CLI, "gateway", "--grpc-target", service.target, "--http-host", "127.0.0.1"),
            *("--http-port", str(http_port), "--metrics-port", str(metrics_port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and gateway.poll() is None
                time.sleep(0.2)
        found = samples(scrape(metrics_port))
        probe = {"http_request_method": "GET", "http_route": "/healthz"}
        assert (
            value(
                found,
                "http_server_request_duration_seconds_count",
                **probe,
                http_response_status_code="200",
            )
            == 1
        )
        assert not [name for name, _ in found if name.startswith("grpc_server_")]
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
        stop(service)
    wait_until_gone(gateway.pid)


def test_a_taken_or_shared_metrics_port_is_refused_in_one_line(tmp_path: Path) -> None:
    grpc_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        refusals = {
            "cannot listen for metrics on 127.0.0.1:": [
                *("--http-host", "127.0.0.1", "--http-port", str(free_port())),
                *("--metrics-port", str(taken.getsockname()[1])),
            ],
            "--grpc-port and --metrics-port must differ": ["--metrics-port", str(grpc_port)],
        }
        serve = [CLI, "serve", "--grpc-port", str(grpc_port), "--data-dir", str(tmp_path)]
        for message, arguments in refusals.items():
            result = subprocess.run(
                [*serve, *arguments], capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 2
            assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
