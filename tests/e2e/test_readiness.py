"""Readiness follows the database: a real `serve` process on a PostgreSQL of the test's own,
which it stops and starts (the shared server is never stopped)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from customer_segments.grpc.server import SERVICE_NAMES
from tests.e2e.test_service_process import CLI, start
from tests.own_postgres import OwnPostgres

# The promise: probes follow an outage, and the recovery, within this long.
WITHIN_S = 5.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _probes(
    http: aiohttp.ClientSession, health: health_pb2_grpc.HealthStub
) -> tuple[int, set[int]]:
    """/readyz's status, and the gRPC health of the server and of each service."""
    async with http.get("/readyz") as ready:
        readiness = ready.status
    statuses: set[int] = set()
    for name in ("", *SERVICE_NAMES):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        statuses.add(answer.status)
    return readiness, statuses


async def _until(
    http: aiohttp.ClientSession,
    health: health_pb2_grpc.HealthStub,
    expected: tuple[int, set[int]],
    within: float,
) -> None:
    deadline = time.monotonic() + within
    seen = await _probes(http, health)
    while seen != expected:
        assert time.monotonic() < deadline, f"still {seen}, not {expected}, after {within}s"
        await asyncio.sleep(0.1)
        seen = await _probes(http, health)


def test_readyz_and_grpc_health_follow_the_database(
    own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    migrated = subprocess.run(
        [CLI, "migrate", "--database-url", own_postgres.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    # The smallest pools: the check has a connection of its own.
    service = start(
        tmp_path,
        "--database-url",
        own_postgres.url,
        "--db-pool-size",
        "1",
        "--db-read-pool-size",
        "1",
        "--shutdown-grace-seconds",
        "1",
    )

    async def scenario() -> None:
        async with (
            grpc.aio.insecure_channel(service.target) as channel,
            aiohttp.ClientSession(service.http) as http,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            await _until(http, health, (200, {SERVING}), 30)
            await asyncio.to_thread(own_postgres.stop)
            try:
                await _until(http, health, (503, {NOT_SERVING}), WITHIN_S)
                async with http.get("/readyz") as ready:
                    body = await ready.json()
                assert "database" in body["message"], body
            finally:
                await asyncio.to_thread(own_postgres.start)
            await _until(http, health, (200, {SERVING}), WITHIN_S)

    try:
        asyncio.run(scenario())
    finally:
        service.process.terminate()
        service.process.wait(timeout=30)
    output = service.output()
    # One line per change, however many checks saw the outage.
    assert output.count("the database does not answer") == 1, output
    assert output.count("the database answers again") == 1, output
