"""The REST port's server set-up: what a connection may cost, the probes, and how it ends.

aiohttp closes an idle keep-alive connection after `keepalive_timeout` (also counted from the
connection's opening, so it bounds a request head that never completes), but has no separate
limit on how long request headers may take and no limit on connections: 1,050 idle sockets
against a 1,024 open-file limit locked every caller out. Each connection here is therefore
counted against a cap below the open-file limit (over it: 503 and closed), and the first
request's head must arrive within `header_timeout_seconds` of the connection's opening.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

import grpc
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from grpc_health.v1 import health_pb2, health_pb2_grpc

from customer_segments.gateway.connection_limits import HttpLimits
from customer_segments.gateway.errors import error_body, error_response

log = logging.getLogger(__name__)

# Set while the gateway drains: /readyz answers 503 so that balancers send no new requests.
STOPPING = web.AppKey("stopping", asyncio.Event)
_ACCEPT_LOG_INTERVAL_SECONDS = 60.0
# Operations' paths beside the Emporix ones (not in openapi.yaml).
PROBE_PATHS = ("/healthz", "/readyz")
# /readyz asks the gRPC server's health this long at most: probes have timeouts of their own
# (Kubernetes: 1 s by default).
READINESS_TIMEOUT_S = 0.8


def _busy_answer() -> bytes:
    body = json.dumps(error_body(503, "Too many open connections; try again later.")).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_BUSY = _busy_answer()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted, refused over the cap, and closed when
    its first request head takes longer than the header timeout."""

    def __init__(self, handler: RequestHandler, site: LimitedSite) -> None:
        self._handler = handler
        self._site = site
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass (uvloop's is not).
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self._site.open_connections >= self._site.limits.max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._site.open_connections += 1
        self._counted = True
        self._timer = asyncio.get_running_loop().call_later(
            self._site.limits.header_timeout_seconds, self._head_overdue
        )
        self._handler.connection_made(transport)

    def _head_overdue(self) -> None:
        self._timer = None
        # aiohttp counts the request heads it has parsed; no public view of it exists. Were it
        # renamed, the default of 1 only turns this timeout off (keep-alive still applies).
        if getattr(self._handler, "_request_count", 1) == 0 and self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> None:
        if self._counted:
            self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._counted:
            return
        self._counted = False
        self._site.open_connections -= 1
        if self._timer is not None:
            self._timer.cancel()
        self._handler.connection_lost(exc)


class LimitedSite(web.TCPSite):
    """A TCPSite whose connections go through _Counted."""

    def __init__(self, runner: web.AppRunner, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.limits = limits
        self.open_connections = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        self._server = await loop.create_server(
            lambda: _Counted(server(), self),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def add_probes(app: web.Application, channel: grpc.aio.Channel) -> None:
    """GET /healthz (the process answers) and GET /readyz (it takes requests: 503 once it
    drains to stop, and while the gRPC server it calls is not SERVING, which it is not while
    its database does not answer). Neither needs a token; both show nothing of any tenant."""
    app[STOPPING] = asyncio.Event()
    health = health_pb2_grpc.HealthStub(channel)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})

    async def readyz(request: web.Request) -> web.Response:
        if request.app[STOPPING].is_set():
            return error_response(503, "The service is stopping.")
        try:
            answer = await health.Check(
                health_pb2.HealthCheckRequest(), timeout=READINESS_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            return error_response(
                503, f"The gRPC server does not answer its health check ({error.code().name})."
            )
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            return error_response(
                503, "The gRPC server is not serving: its database does not answer, or it stops."
            )
        return web.json_response({"status": "UP"})

    app.router.add_get(PROBE_PATHS[0], healthz)
    app.router.add_get(PROBE_PATHS[1], readyz)


def log_accept_errors_once(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio reports every failed accept() (EMFILE: out of descriptors) through the loop's
    exception handler, and retries each second per listener; say it once a minute instead,
    with how often it happened."""
    previous = loop.get_exception_handler()
    state = {"last": float("-inf"), "suppressed": 0}

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "socket.accept()" not in str(context.get("message", "")):
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - state["last"] < _ACCEPT_LOG_INTERVAL_SECONDS:
            state["suppressed"] += 1
            return
        log.error(
            "cannot accept REST connections: %s (%d more such errors not logged); "
            "raise the open-file limit or lower --max-connections",
            context.get("exception"),
            state["suppressed"],
        )
        state["last"], state["suppressed"] = now, 0

    loop.set_exception_handler(handle)
