"""`customer-segments health`, the image's health check: it asks the port the settings name
and exits 0 only when the server reports SERVING."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from grpc_health.v1 import health_pb2

from customer_segments.auth.tokens import TokenVerifier
from customer_segments.grpc.server import start_grpc_server
from customer_segments.store.store import Store
from tests.e2e.test_service_process import CLI, free_port, start
from tests.helpers import TEST_SECRET


def health(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "health", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_health_asks_the_port_of_the_settings(tmp_path: Path) -> None:
    service = start(tmp_path)
    try:
        by_env = health(env={"CUSTOMER_SEGMENTS_GRPC_PORT": str(service.port)})
        assert by_env.returncode == 0, by_env.stderr
        by_flag = health("--grpc-port", str(service.port))
        assert by_flag.returncode == 0, by_flag.stderr
    finally:
        service.process.kill()
        service.process.wait()


def test_nothing_listening_is_unhealthy() -> None:
    port = free_port()
    result = health("--grpc-port", str(port))
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"customer-segments: no answer from 127.0.0.1:{port}: UNAVAILABLE"
    )


async def test_not_serving_is_unhealthy(store: Store) -> None:
    server = await start_grpc_server(
        store, "127.0.0.1", 0, verifier=TokenVerifier(secret=TEST_SECRET.encode())
    )
    try:
        await server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        checked = await asyncio.create_subprocess_exec(
            CLI,
            "health",
            "--grpc-port",
            str(server.port),
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(checked.communicate(), timeout=60)
        assert checked.returncode == 1
        assert stderr.decode().strip() == (
            f"customer-segments: 127.0.0.1:{server.port} is NOT_SERVING"
        )
    finally:
        await server.stop(0)
