"""The gRPC server: services, reflection, health, and a graceful stop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from customersegment.v1 import (
    assignment_pb2,
    assignment_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    segment_pb2,
    segment_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from customer_segments import metrics, tracing
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.grpc.assignment_servicer import CustomerAssignmentServicer
from customer_segments.grpc.auth_interceptor import FIRST_MESSAGE_TIMEOUT_SECONDS, AuthInterceptor
from customer_segments.grpc.call_interceptor import CallInterceptor
from customer_segments.grpc.directory_servicer import DirectoryServicer
from customer_segments.grpc.event_servicer import EventServicer
from customer_segments.grpc.in_process import InProcessChannel, MethodRegistry
from customer_segments.grpc.segment_servicer import SegmentServicer
from customer_segments.grpc.webhook_servicer import WebhookServicer
from customer_segments.limits import GATEWAY_MAX_REQUEST_BYTES, MAX_ANSWER_BYTES, MIB
from customer_segments.services.events import DEFAULT_RETENTION, PRUNE_INTERVAL_S, prune_events
from customer_segments.services.readiness import CHECK_INTERVAL_S, follow_database
from customer_segments.startup import port_taken
from customer_segments.store.notifier import EventNotifier
from customer_segments.store.store import Store
from customer_segments.tls import ServerTls

log = logging.getLogger(__name__)

# grpc-stubs does not declare the public alias grpc_health.v1.health.aio.
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]

SERVICE_NAMES = (
    assignment_pb2.DESCRIPTOR.services_by_name["CustomerAssignmentService"].full_name,
    segment_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name,
    directory_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)
# Per connection: enough for any client's pipelining (h2load -m 10, the gateway's channel),
# few enough that one connection cannot take every call slot.
MAX_CONCURRENT_STREAMS = 100
# A connection without a call for this long is closed (GOAWAY; clients reconnect on their
# next call), so idle connections do not pile up.
MAX_CONNECTION_IDLE_MS = 5 * 60 * 1000
# Keepalive pings: accepted down to one every 5 s, with or without calls (grpc-go and Java
# clients may ping every 10 s, load balancers every 10-30 s); C-core's default answers a
# client pinging more often than every 5 minutes with GOAWAY too_many_pings. The server pings
# idle clients every minute itself, so that connections of vanished peers are closed.
MIN_PING_INTERVAL_MS = 5_000
MAX_PING_STRIKES = 2
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class ServerLimits:
    """What a caller can make one server process hold; see config.Settings."""

    # Room for what the gateway sends for a 10 MB REST body (limits.py), and for a gRPC bulk
    # of 1,000 items with 10 KB of mixins each.
    max_receive_bytes: int = max(16 * MIB, GATEWAY_MAX_REQUEST_BYTES)
    max_concurrent_rpcs: int = 1000
    max_connections: int = 1000
    max_connection_age_seconds: float = 0.0
    max_connection_age_grace_seconds: float = 30.0
    first_message_timeout_seconds: float = FIRST_MESSAGE_TIMEOUT_SECONDS
    min_ping_interval_ms: int = MIN_PING_INTERVAL_MS

    def options(self) -> list[tuple[str, int]]:
        options = [
            ("grpc.max_receive_message_length", self.max_receive_bytes),
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
            ("grpc.http2.min_ping_interval_without_data_ms", self.min_ping_interval_ms),
            ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ]
        if self.max_connection_age_seconds > 0:
            options += [
                ("grpc.max_connection_age_ms", int(self.max_connection_age_seconds * 1000)),
                (
                    "grpc.max_connection_age_grace_ms",
                    int(self.max_connection_age_grace_seconds * 1000),
                ),
            ]
        return options


DEFAULT_LIMITS = ServerLimits()


class GrpcServer:
    """A started server; `port` is the bound one (useful with port 0 in tests).

    `channel` calls the same services in this process (grpc/in_process.py), for the REST
    gateway of `serve`: stopping refuses new calls on the public port at once while the REST
    requests still draining keep reaching the services through it."""

    def __init__(
        self,
        server: aio.Server,
        health_servicer: Any,
        port: int,
        channel: InProcessChannel,
        database_watch: asyncio.Task[None],
        notifier: EventNotifier,
        pruning: asyncio.Task[None],
    ) -> None:
        self.server = server
        self.health = health_servicer
        self.port = port
        self.channel = channel
        # "New events for tenant X" for whoever publishes them in this process.
        self.notifier = notifier
        self._database_watch = database_watch
        self._pruning = pruning
        self._public_stop: asyncio.Future[None] | None = None

    async def stop_accepting(self, grace: float) -> None:
        """Health turns NOT_SERVING and the public port takes no new calls (clients get
        GOAWAY and go elsewhere); calls in flight there get `grace` seconds."""
        if self._public_stop is None:
            self._public_stop = asyncio.ensure_future(self.server.stop(grace))
            # The stop's first step refuses new calls; it must run before health says
            # NOT_SERVING, or a caller told so could still have a call taken (seen under load).
            await asyncio.sleep(0)
            await self.health.enter_graceful_shutdown()
            # WatchEvents streams end now (OK) rather than hold the grace period.
            self.notifier.close()

    async def stop(self, grace: float) -> None:
        """What stop_accepting does, if not done yet; then the server stops."""
        await self.stop_accepting(grace)
        self._database_watch.cancel()
        self._pruning.cancel()
        # Their statements are over before the store closes.
        await asyncio.wait([self._database_watch, self._pruning])
        assert self._public_stop is not None
        await self._public_stop
        await self.notifier.stop()


def _tls_mode(tls: ServerTls | None) -> str:
    if tls is None:
        return ""
    return " (TLS, client certificates required)" if tls.client_ca else " (TLS)"


async def _set_health(health_servicer: Any, serving: bool) -> None:
    """Every service, and the server as a whole (""), alike; ignored once stopping began
    (grpc_health keeps NOT_SERVING after enter_graceful_shutdown)."""
    status = health_pb2.HealthCheckResponse
    value = status.SERVING if serving else status.NOT_SERVING
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, value)


def _server(
    store: Store,
    verifier: TokenVerifier,
    options: list[tuple[str, int]],
    limits: ServerLimits,
    health_servicer: Any,
    access_log: bool,
    notifier: EventNotifier,
) -> tuple[aio.Server, InProcessChannel]:
    # The error status, access line and metrics (one wrapper) are outside the auth
    # interceptor, so that a refused token gets a proper status, a line and its count too.
    interceptors: list[aio.ServerInterceptor] = [  # type: ignore[type-arg]
        CallInterceptor(access_log, metrics.instruments()),
        AuthInterceptor(verifier, limits.first_message_timeout_seconds),
    ]
    traced = tracing.grpc_server_interceptor()
    if traced is not None:  # outermost: the span covers everything the others do
        interceptors.insert(0, traced)
    server = aio.server(
        interceptors=interceptors,
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    registry = MethodRegistry(server)  # on the server, and for the in-process channel
    registered = registry.as_server()
    assignment_pb2_grpc.add_CustomerAssignmentServiceServicer_to_server(
        CustomerAssignmentServicer(store), registered
    )
    segment_pb2_grpc.add_SegmentServiceServicer_to_server(SegmentServicer(store), registered)
    directory_pb2_grpc.add_DirectoryServiceServicer_to_server(DirectoryServicer(store), registered)
    webhooks_pb2_grpc.add_WebhookServiceServicer_to_server(WebhookServicer(store), registered)
    events_pb2_grpc.add_EventServiceServicer_to_server(EventServicer(store, notifier), registered)
    # In process too: the gateway's /readyz asks it.
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registered)
    return server, InProcessChannel(interceptors, registry.handlers, GATEWAY_MAX_REQUEST_BYTES)


async def start_grpc_server(
    store: Store,
    host: str,
    port: int,
    *,
    verifier: TokenVerifier,
    share_port: bool = False,
    limits: ServerLimits = DEFAULT_LIMITS,
    tls: ServerTls | None = None,
    database_check_interval: float = CHECK_INTERVAL_S,
    access_log: bool = True,
    events_retention: timedelta = DEFAULT_RETENTION,
    prune_interval: float = PRUNE_INTERVAL_S,
    listen_url: str | None = None,
) -> GrpcServer:
    """`share_port` lets the workers of `serve --workers N` bind one port (SO_REUSEPORT);
    otherwise a port in use is an error rather than silently shared with another server.
    `tls` makes the public port TLS; the REST gateway of this process calls through the
    server's `channel`, in process. Health follows the database (services/readiness.py),
    checked every `database_check_interval` seconds. `access_log`: one log line per call
    (customer_segments.access). Events older than `events_retention` are pruned every
    `prune_interval` seconds."""
    # One listener (PostgreSQL) or poll (SQLite) per process, for every watcher.
    notifier = EventNotifier(store, listen_url=listen_url)
    await notifier.start()
    # The largest answer: one stored object is never cut (pages are; see limits.py).
    options = [("grpc.max_send_message_length", MAX_ANSWER_BYTES), *limits.options()]
    health_servicer = HealthServicer()
    server, channel = _server(
        store,
        verifier,
        [("grpc.so_reuseport", int(share_port)), *options],
        limits,
        health_servicer,
        access_log,
        notifier,
    )
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        address = f"{host}:{port}"
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, tls.credentials())
    except RuntimeError:
        await notifier.stop()
        raise port_taken(host, port, "gRPC", "--grpc-port", "cannot bind") from None
    await server.start()
    await _set_health(health_servicer, True)
    watch = asyncio.create_task(
        follow_database(store, partial(_set_health, health_servicer), database_check_interval)
    )
    pruning = asyncio.create_task(prune_events(store, events_retention, interval=prune_interval))
    log.info("gRPC listening on %s:%d%s", host, bound, _tls_mode(tls))
    return GrpcServer(server, health_servicer, bound, channel, watch, notifier, pruning)
