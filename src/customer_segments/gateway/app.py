"""The aiohttp application: routes, Emporix error bodies for every failure, request ids."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web import ContentCoding

from customer_segments import metrics
from customer_segments.client.client import TlsConfig, channel_credentials
from customer_segments.gateway.access_log import access_log_middleware
from customer_segments.gateway.assignment_routes import AssignmentRoutes
from customer_segments.gateway.conditions import CONDITIONAL, PreconditionFailed
from customer_segments.gateway.connection_limits import DEFAULT_HTTP_LIMITS, HttpLimits
from customer_segments.gateway.cors import cors_middleware
from customer_segments.gateway.errors import error_response, from_rpc_error
from customer_segments.gateway.grpc_client import REQUEST_ID, GrpcClient, RpcFailed
from customer_segments.gateway.http_server import (
    STOPPING,
    LimitedSite,
    add_probes,
    log_accept_errors_once,
)
from customer_segments.gateway.protocol import EmporixAppRunner
from customer_segments.gateway.requests import BadRequest, check_request, request_id
from customer_segments.gateway.segment_routes import SegmentRoutes
from customer_segments.gateway.webhook_routes import WebhookRoutes
from customer_segments.limits import GATEWAY_MAX_REQUEST_BYTES, MAX_ANSWER_BYTES, MAX_BODY_BYTES
from customer_segments.logs import request_id as logged_request_id
from customer_segments.shutdown import stop_requested
from customer_segments.startup import port_taken

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_MESSAGES = {
    404: "No such path.",
    405: "This method is not allowed on this path.",
    413: f"The request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.",
}


@web.middleware
async def emporix_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as the documented Error body, never a stack trace; X-Request-Id echoed."""
    response: web.StreamResponse
    refused: BadRequest | None = None
    try:
        given = request_id(request)
    except BadRequest as error:
        given, refused = None, error
    request[REQUEST_ID] = current_id = given or secrets.token_hex(16)
    logged_request_id.set(current_id)  # for the log lines of this request (its own task)
    try:
        if refused is not None:
            raise refused
        check_request(request)
        response = await handler(request)
    except BadRequest as error:
        response = error.response()
    except RpcFailed as failure:
        # A refused cursor is named by the parameter that carried it (next or prev).
        cursor = (request.query.get("next") and "next") or (request.query.get("prev") and "prev")
        response = from_rpc_error(
            failure.error,
            # The read mask is the `fields` parameter, translated (gateway/field_names.py).
            {"page_token": cursor or "pageToken", "read_mask": "fields"},
            failure.request_bytes,
            conditional=request.get(CONDITIONAL, False),
        )
        if response.status >= 500:
            log.error(
                "request %s %s: the gRPC call failed with %s: %s (request id %s)",
                request.method,
                request.path,
                failure.error.code().name,
                failure.error.details(),
                current_id,
            )
    except PreconditionFailed as error:
        response = error_response(412, str(error), resource_id=error.resource_id)
    except web.HTTPException as error:
        message = _HTTP_MESSAGES.get(error.status, error.reason)
        response = error_response(error.status, message)
        if error.status == 405:
            response.headers["Allow"] = error.headers.get("Allow", "")
    except Exception:
        log.exception(
            "request %s %s failed (request id %s)", request.method, request.path, current_id
        )
        response = error_response(500, "Internal error")
    response.headers["X-Request-Id"] = current_id
    if isinstance(response, web.Response):
        _compress(request, response)
    return response


# Answers up to this size go as they are: gzip would save a few bytes at the cost of the CPU.
COMPRESS_ABOVE_BYTES = 1024
_GZIP_REFUSED = re.compile(r"gzip\s*;\s*q\s*=\s*0(?:\.0{0,3})?\s*(?:,|$)")


def _compress(request: web.Request, response: web.Response) -> None:
    """gzip for an answer over 1 KB when the caller accepts it (304 and 204 have no body)."""
    body = response.body
    if not isinstance(body, bytes) or len(body) <= COMPRESS_ABOVE_BYTES:
        return
    response.headers["Vary"] = "Accept-Encoding"
    accepted = request.headers.get("Accept-Encoding", "").lower()
    if "gzip" in accepted and not _GZIP_REFUSED.search(accepted):
        response.enable_compression(ContentCoding.gzip)


OPENAPI = Path(__file__).with_name("openapi.yaml")
# The largest request a REST body makes, and the largest answer the server sends (limits.py).
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", GATEWAY_MAX_REQUEST_BYTES),
    ("grpc.max_receive_message_length", MAX_ANSWER_BYTES),
]


def create_app(
    channel: grpc.aio.Channel, cors_origins: tuple[str, ...] = (), access_log: bool = True
) -> web.Application:
    """`cors_origins`: the origins (or `*`) whose scripts may call the gateway; none: no CORS.
    `access_log`: one log line per request (customer_segments.access)."""
    middlewares: list[Middleware] = [access_log_middleware] if access_log else []
    # CORS outside the rest: a preflight is answered before anything else looks at the
    # request, and every answer, the Error bodies included, gets its headers.
    if cors_origins:
        middlewares.append(cors_middleware(cors_origins))
    middlewares.append(emporix_answers)
    instruments = metrics.instruments()
    if instruments is not None:  # outermost: it times and counts every answer
        from customer_segments.gateway.metrics_middleware import metrics_middleware

        middlewares.insert(0, metrics_middleware(instruments))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    description = OPENAPI.read_bytes()  # generated by scripts/build_openapi.py

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=description, content_type="application/yaml")

    app.router.add_get("/openapi.yaml", openapi)
    add_probes(app, channel)
    client = GrpcClient(channel)
    AssignmentRoutes(client).register(app)
    SegmentRoutes(client).register(app)
    WebhookRoutes(client).register(app)
    return app


class Gateway:
    """A started gateway; `port` is the bound one (useful with port 0 in tests)."""

    def __init__(self, runner: web.AppRunner, channel: grpc.aio.Channel, port: int) -> None:
        self.runner = runner
        self.channel = channel
        self.port = port

    async def stop(self) -> None:
        """Readiness turns 503, listening stops, in-flight requests get the grace given at
        start, then the channel closes."""
        self.runner.app[STOPPING].set()
        await self.runner.cleanup()
        await self.channel.close(None)


async def start_gateway(
    grpc_target: str,
    host: str,
    port: int,
    grace: float = 10.0,
    *,
    share_port: bool = False,
    limits: HttpLimits = DEFAULT_HTTP_LIMITS,
    cors_origins: tuple[str, ...] = (),
    tls: TlsConfig | None = None,
    access_log: bool = True,
) -> Gateway:
    """The gateway in front of the gRPC server at `grpc_target`. `share_port`: as for the
    gRPC server, several processes share the port. `tls`: how the channel reaches a gRPC
    server that serves TLS (None: plaintext)."""
    channel = (
        grpc.aio.insecure_channel(grpc_target, options=CHANNEL_OPTIONS)
        if tls is None
        else grpc.aio.secure_channel(grpc_target, channel_credentials(tls), CHANNEL_OPTIONS)
    )
    gateway = await start_gateway_on(
        channel,
        host,
        port,
        grace,
        share_port=share_port,
        limits=limits,
        cors_origins=cors_origins,
        access_log=access_log,
    )
    log.info("REST gateway listening on %s:%d, calling gRPC at %s", host, gateway.port, grpc_target)
    return gateway


async def start_gateway_on(
    channel: grpc.aio.Channel,
    host: str,
    port: int,
    grace: float = 10.0,
    *,
    share_port: bool = False,
    limits: HttpLimits = DEFAULT_HTTP_LIMITS,
    cors_origins: tuple[str, ...] = (),
    access_log: bool = True,
) -> Gateway:
    """The gateway calling through `channel`: a remote server's, or the in-process one of
    `serve` (grpc/in_process.py). OSError when the port cannot be bound."""
    runner = EmporixAppRunner(
        create_app(channel, cors_origins, access_log),
        access_log=None,  # aiohttp's own: the access log is the middleware's
        shutdown_timeout=grace,
        keepalive_timeout=limits.keepalive_seconds,
    )
    await runner.setup()
    log_accept_errors_once(asyncio.get_running_loop())
    site = LimitedSite(runner, limits, host=host, port=port, reuse_port=share_port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])  # the kernel's pick when port is 0
    return Gateway(runner, channel, bound)


async def run_gateway(
    grpc_target: str,
    host: str,
    port: int,
    limits: HttpLimits = DEFAULT_HTTP_LIMITS,
    cors_origins: tuple[str, ...] = (),
    tls: TlsConfig | None = None,
    access_log: bool = True,
) -> None:
    """`customer-segments gateway`: the gateway alone, in front of a remote gRPC server."""
    stop = stop_requested()
    try:
        gateway = await start_gateway(
            grpc_target,
            host,
            port,
            limits=limits,
            cors_origins=cors_origins,
            tls=tls,
            access_log=access_log,
        )
    except OSError as error:
        reason = error.strerror or str(error)
        raise port_taken(host, port, "REST", "--http-port", reason) from None
    try:
        await stop.wait()
    finally:
        await gateway.stop()
