"""The gRPC server: services, reflection, health, and a graceful stop."""

from __future__ import annotations

import logging
from typing import Any

from customersegment.v1 import (
    assignment_pb2,
    assignment_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    segment_pb2,
    segment_pb2_grpc,
)
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from customer_segments.auth.tokens import TokenVerifier
from customer_segments.grpc.assignment_servicer import CustomerAssignmentServicer
from customer_segments.grpc.auth_interceptor import AuthInterceptor
from customer_segments.grpc.directory_servicer import DirectoryServicer
from customer_segments.grpc.interceptors import DomainErrorInterceptor
from customer_segments.grpc.segment_servicer import SegmentServicer
from customer_segments.limits import MAX_ANSWER_BYTES
from customer_segments.store.store import Store

log = logging.getLogger(__name__)

# grpc-stubs does not declare the public alias grpc_health.v1.health.aio.
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]

SERVICE_NAMES = (
    assignment_pb2.DESCRIPTOR.services_by_name["CustomerAssignmentService"].full_name,
    segment_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name,
    directory_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class GrpcServer:
    """A started server; `port` is the bound one (useful with port 0 in tests)."""

    def __init__(self, server: aio.Server, health_servicer: Any, port: int):
        self.server = server
        self.health = health_servicer
        self.port = port

    async def stop(self, grace: float) -> None:
        """Health turns NOT_SERVING first, then in-flight calls get `grace` seconds to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc_server(
    store: Store,
    host: str,
    port: int,
    *,
    verifier: TokenVerifier,
    share_port: bool = False,
    local_socket: str | None = None,
) -> GrpcServer:
    """`share_port` lets the workers of `serve --workers N` bind one port (SO_REUSEPORT);
    otherwise a port in use is an error rather than silently shared with another server.
    `local_socket`, a Unix socket path, is a second address for callers in this process."""
    server = aio.server(
        # The error interceptor is outermost, so that a refused token gets a proper status too.
        interceptors=[DomainErrorInterceptor(), AuthInterceptor(verifier)],
        options=[
            ("grpc.so_reuseport", int(share_port)),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # The largest answer: one stored object is never cut (pages are; see limits.py).
            ("grpc.max_send_message_length", MAX_ANSWER_BYTES),
        ],
    )
    assignment_pb2_grpc.add_CustomerAssignmentServiceServicer_to_server(
        CustomerAssignmentServicer(store), server
    )
    segment_pb2_grpc.add_SegmentServiceServicer_to_server(SegmentServicer(store), server)
    directory_pb2_grpc.add_DirectoryServiceServicer_to_server(DirectoryServicer(store), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if local_socket is not None:
        server.add_insecure_port(f"unix:{local_socket}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC listening on %s:%d", host, bound)
    return GrpcServer(server, health_servicer, bound)
