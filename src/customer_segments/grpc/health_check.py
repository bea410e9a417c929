"""`customer-segments health`: asks a running server's grpc.health.v1 whether it serves, for a
container's health check that follows the configured port."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class NotServing(Exception):
    """The server answered with another status than SERVING, or did not answer."""


def local_target(host: str, port: int) -> str:
    """Where a process beside the server reaches it: a wildcard interface through loopback."""
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def check_health(target: str, timeout_seconds: float) -> None:
    """Returns when the server at `target` (HOST:PORT, plaintext) reports SERVING for the whole
    server (the empty service name); raises NotServing otherwise."""
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_seconds
            )
        except grpc.RpcError as error:
            code = error.code()
            raise NotServing(f"no answer from {target}: {code.name}") from None
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        raise NotServing(f"{target} is {status}")
