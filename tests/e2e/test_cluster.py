"""The service scaled out as README "Scaling" runs it: HAProxy in front of three replicas, all
on one PostgreSQL database through PgBouncer in transaction mode (scripts/local_cluster.py,
what `make cluster` starts), driven only through HAProxy. Each test writes segments of its
own: under pytest-xdist, two workers may each start a cluster for the tests they take."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, events_pb2, events_pb2_grpc

from customer_segments.auth.tokens import issue_token
from customer_segments.client import BulkUpsertItem, CustomerSegmentsClient
from tests.conftest import fresh_postgres_database, skip_unless_ci
from tests.e2e.test_service_process import Service, free_port, grpcurl_walkthrough, token
from tests.integration.test_readme_client import README, readme_example_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import local_cluster  # scripts/ is not a package: on the path above

REPLICAS = ("r1", "r2", "r3")
ALL_SCOPES = "customersegment.segment_read customersegment.segment_manage"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_cluster.Cluster]:
    try:
        local_cluster.require_tools()
    except local_cluster.ClusterError as error:
        skip_unless_ci(str(error))
    with fresh_postgres_database("cs_cluster") as url:
        layout = local_cluster.plan(
            tmp_path_factory.mktemp("cluster"), database_url=url, port=free_port
        )
        started = local_cluster.Cluster(layout)
        try:
            started.start()
            yield started
        finally:
            started.stop()


@pytest.fixture(scope="module")
def admin_token(cluster: local_cluster.Cluster) -> str:
    """Signed with the cluster's secret by `customer-segments token`, as its start prints."""
    return token(cluster.run_dir, "--tenant", "acme", "--scope", ALL_SCOPES)


@pytest.fixture
async def stub(cluster: local_cluster.Cluster) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(cluster.layout.grpc_target) as channel:
        yield assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)


def served_by(metadata: Any) -> str:
    """The replica HAProxy sent a call to (the x-served-by header its configuration adds)."""
    return str(dict(metadata or ())["x-served-by"])


class ThroughHaproxy(Service):
    """grpcurl through the cluster's HAProxy, for the walkthrough (no process of its own)."""

    def __init__(self, target: str, admin_token: str) -> None:
        self.target = target
        self.admin_token = admin_token


def test_the_readme_walkthroughs_through_haproxy(
    cluster: local_cluster.Cluster, admin_token: str
) -> None:
    # It creates segment gold, which the REST walkthrough writes to.
    grpcurl_walkthrough(ThroughHaproxy(cluster.layout.grpc_target, admin_token))

    text = README.read_text()
    block = re.search(r"```sh\n(R=http://localhost:8080/.*?)```", text, re.DOTALL)
    assert block is not None, "no REST walkthrough in README.md"
    script = block.group(1).replace("http://localhost:8080", cluster.layout.http_url)
    done = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "TOKEN": admin_token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    statuses = [int(code) for code in re.findall(r"^HTTP/1.1 (\d+)", done.stdout, re.M)]
    # PUT, B2B PUT, the list, DELETE and the call without a token (the others show no head).
    assert statuses == [201, 201, 200, 204, 401], done.stdout
    # The bulk body: a result per item, in request order.
    assert '[{"index": 1, "code": 201, "status": "Created"}, {"index": 2, "code": 400' in (
        done.stdout
    )
    replicas = set(re.findall(r"^X-Served-By: (r\d)", done.stdout, re.M | re.I))
    assert len(replicas) >= 2, done.stdout  # balanced per request


async def test_the_readme_client_and_its_10000_item_stream_through_haproxy(
    cluster: local_cluster.Cluster, admin_token: str
) -> None:
    await readme_example_runs(cluster.layout.grpc_target, admin_token)


async def test_a_cursor_made_by_one_replica_is_read_on_by_another(
    cluster: local_cluster.Cluster, admin_token: str, stub: Any
) -> None:
    metadata = (("authorization", f"Bearer {admin_token}"),)
    async with CustomerSegmentsClient(cluster.layout.grpc_target, token=admin_token) as client:
        await client.upsert_segment("acme", "paged", name={"en": "Paged"}, site_code="main")
        for n in range(12):
            await client.upsert_assignment("acme", "paged", f"p{n:02}")
    seen: list[str] = []
    replicas: list[str] = []
    cursor = ""
    while True:
        call = stub.ListAssignments(
            assignment_pb2.ListAssignmentsRequest(
                tenant="acme", segment_id="paged", page_size=5, page_token=cursor
            ),
            metadata=metadata,
        )
        page = await call
        replicas.append(served_by(await call.initial_metadata()))
        seen += [a.customer.id for a in page.assignments]
        cursor = page.next_page_token
        if not cursor:
            break
    assert seen == [f"p{n:02}" for n in range(12)]
    # Round robin: each page was read on another replica than the one that made its cursor.
    assert all(a != b for a, b in itertools.pairwise(replicas)), replicas


async def test_every_replica_verifies_tokens_itself(
    cluster: local_cluster.Cluster, admin_token: str, stub: Any
) -> None:
    async with CustomerSegmentsClient(cluster.layout.grpc_target, token=admin_token) as client:
        await client.upsert_segment("acme", "tokens", name={"en": "Tokens"}, site_code="main")
        await client.upsert_assignment("acme", "tokens", "c1")
    request = assignment_pb2.GetAssignmentRequest(
        tenant="acme", segment_id="tokens", customer_id="c1"
    )
    accepted = set()
    for _ in range(2 * len(REPLICAS)):
        call = stub.GetAssignment(request, metadata=(("authorization", f"Bearer {admin_token}"),))
        await call
        accepted.add(served_by(await call.initial_metadata()))
    assert accepted == set(REPLICAS)
    # Each replica has a cache of its own of tokens it verified: a token none has seen, signed
    # with another secret, is refused by each of them.
    forged = issue_token(
        b"another secret, not the cluster's 0123456789",
        tenant="acme",
        scopes=ALL_SCOPES.split(),
        ttl_seconds=600,
    )
    refused = set()
    for _ in range(2 * len(REPLICAS)):
        call = stub.GetAssignment(request, metadata=(("authorization", f"Bearer {forged}"),))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        refused.add(served_by(raised.value.trailing_metadata()))
    assert refused == set(REPLICAS)


async def test_a_watcher_through_haproxy_sees_the_writes_of_every_replica(
    cluster: local_cluster.Cluster, admin_token: str, stub: Any
) -> None:
    """The stream stays on one replica; writes go round robin to all three. Each replica's
    LISTEN connection goes straight to PostgreSQL (--database-listen-url), past PgBouncer."""
    metadata = (("authorization", f"Bearer {admin_token}"),)
    async with grpc.aio.insecure_channel(cluster.layout.grpc_target) as channel:
        watch = events_pb2_grpc.EventServiceStub(channel).WatchEvents(
            events_pb2.WatchEventsRequest(tenant="acme", segment_id="watched"),
            metadata=metadata,
        )
        await watch.wait_for_connection()
        async with CustomerSegmentsClient(cluster.layout.grpc_target, token=admin_token) as client:
            await client.upsert_segment("acme", "watched", name={"en": "W"}, site_code="main")
        writers = set()
        for n in range(2 * len(REPLICAS)):
            call = stub.UpsertAssignment(
                assignment_pb2.UpsertAssignmentRequest(
                    tenant="acme", segment_id="watched", customer_id=f"w{n}"
                ),
                metadata=metadata,
            )
            await call
            writers.add(served_by(await call.initial_metadata()))
        assert writers == set(REPLICAS)
        seen: list[str] = []
        async with asyncio.timeout(30):
            async for answer in watch:
                payload = json.loads(answer.event.payload_json)
                seen.append(payload.get("customer", {}).get("id", answer.event.type))
                if len(seen) == 1 + 2 * len(REPLICAS):
                    break
        watch.cancel()
    assert seen == ["customer-segment.segment-created", *(f"w{n}" for n in range(6))]


async def test_a_replica_killed_under_load_loses_no_acknowledged_write_and_rejoins(
    cluster: local_cluster.Cluster, admin_token: str
) -> None:
    layout = cluster.layout
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def writer(client: CustomerSegmentsClient, lane: int) -> None:
        n = 0
        while not stop.is_set():
            customer = f"w{lane}-{n}"
            # The client's default retry policy (UNAVAILABLE, 4 attempts): a call on the
            # killed replica fails UNAVAILABLE (HAProxy resets its stream) and is tried again,
            # on another replica.
            await client.upsert_assignment("acme", "load", customer, mixins={"n": n})
            acknowledged.append(customer)
            n += 1

    async def bulk_writer(client: CustomerSegmentsClient, lane: int) -> None:
        """Bulk calls last longer than single ones: some are in flight on r2 when it dies."""
        n = 0
        while not stop.is_set():
            items = [BulkUpsertItem(f"b{lane}-{n}-{k}") for k in range(200)]
            async for result in client.bulk_upsert_assignments("acme", "load", items):
                assert result.ok, result
                acknowledged.append(result.customer_id)
            n += 1

    async with CustomerSegmentsClient(layout.grpc_target, token=admin_token) as client:
        await client.upsert_segment("acme", "load", name={"en": "Load"}, site_code="main")
        writers = [asyncio.create_task(writer(client, lane)) for lane in range(6)]
        writers += [asyncio.create_task(bulk_writer(client, lane)) for lane in range(3)]
        try:
            await _until(lambda: len(acknowledged) >= 300, "300 writes before the kill")
            await _until(lambda: _server_stats(cluster, "r2")["scur"] >= 2, "calls on r2")
            killed_at = time.monotonic()
            cluster.kill("r2")  # SIGKILL to its process group: server and gateway
            written_at_kill = len(acknowledged)
            await asyncio.to_thread(cluster.wait_for_states, {"r2": "DOWN"}, 60)
            marked_down_s = time.monotonic() - killed_at
            # The two left carry the whole load: on a machine busy with other work, one may
            # miss two checks in a row for a moment (a check allows 3 s). It is UP again soon
            # after; calls it missed meanwhile went to the other (none may fail, see below).
            await asyncio.to_thread(cluster.wait_for_states, {"r1": "UP", "r3": "UP"}, 30)
            await _until(
                lambda: len(acknowledged) >= written_at_kill + 300, "300 writes after the kill"
            )
        finally:
            stop.set()
            results = await asyncio.gather(*writers, return_exceptions=True)
        assert [r for r in results if r is not None] == [], "a call failed after retries"
    r2 = _server_stats(cluster, "r2")
    # Streams HAProxy sent to r2 that got no answer and were not redispatched (those whose
    # connection was refused after the kill): the calls in flight when it died, which failed
    # UNAVAILABLE and succeeded on a retry.
    interrupted = r2["stot"] - r2["answered"] - r2["wredis"]
    assert interrupted >= 1, r2

    # Every acknowledged write is in the database (read straight from PostgreSQL).
    connection = await asyncpg.connect(layout.database_url)
    try:
        stored = {
            row["customer_id"]
            for row in await connection.fetch(
                "SELECT customer_id FROM customer_assignments "
                "WHERE tenant = 'acme' AND segment_id = 'load'"
            )
        }
    finally:
        await connection.close()
    assert set(acknowledged) <= stored
    # Thousands of calls of three replicas through PgBouncer in transaction mode: none met a
    # statement name another client had left on a server connection ("prepared statement ...
    # already exists", as with --pg-statement-cache-size 100), nor lost its statement.
    for name in REPLICAS:
        log = (cluster.run_dir / f"{name}.log").read_text()
        assert "UpsertAssignment OK" in log, name
        assert "prepared statement" not in log, name
    # HAProxy's check interval is 1 s, two failures mark a replica down: well within this.
    assert marked_down_s < 30, marked_down_s
    print(
        f"r2 DOWN {marked_down_s:.1f}s after kill -9; {len(acknowledged)} writes; "
        f"{interrupted} calls in flight on r2 retried"
    )

    cluster.start_replica("r2")
    cluster.wait_ready("r2")
    await asyncio.to_thread(cluster.wait_for_states, {name: "UP" for name in REPLICAS}, 120)
    async with grpc.aio.insecure_channel(layout.grpc_target) as channel:
        stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
        request = assignment_pb2.GetAssignmentRequest(
            tenant="acme", segment_id="load", customer_id=acknowledged[0]
        )
        answered = set()
        for _ in range(2 * len(REPLICAS)):
            call = stub.GetAssignment(
                request, metadata=(("authorization", f"Bearer {admin_token}"),)
            )
            await call
            answered.add(served_by(await call.initial_metadata()))
    assert "r2" in answered, answered


def _server_stats(cluster: local_cluster.Cluster, name: str) -> dict[str, int]:
    """HAProxy's counters of a replica in the gRPC backend: streams now (scur) and in all
    (stot), those answered with a status, and those redispatched to another replica."""
    rows = cluster.haproxy_command("show stat").removeprefix("# ").splitlines()
    for row in csv.DictReader(rows):
        if row["pxname"] == "grpc" and row["svname"] == name:
            number = {key: int(value or 0) for key, value in row.items() if key and value.isdigit()}
            answered = sum(
                number.get(f"hrsp_{kind}", 0)
                for kind in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
            )
            return {**number, "answered": answered, "wredis": number.get("wredis", 0)}
    raise AssertionError(f"no server {name} in HAProxy's gRPC backend")


async def _until(condition: Any, what: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
