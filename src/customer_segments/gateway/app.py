"""The aiohttp application: routes, Emporix error bodies for every failure, request ids."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web

from customer_segments.gateway.assignment_routes import AssignmentRoutes
from customer_segments.gateway.errors import error_response, from_rpc_error
from customer_segments.gateway.grpc_client import REQUEST_ID, GrpcClient, RpcFailed
from customer_segments.gateway.requests import BadRequest
from customer_segments.gateway.segment_routes import SegmentRoutes
from customer_segments.grpc.server import stop_requested

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_MESSAGES = {
    404: "No such path.",
    405: "This method is not allowed on this path.",
    413: f"The request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.",
}


@web.middleware
async def emporix_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as the documented Error body, never a stack trace; X-Request-Id echoed."""
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    response: web.StreamResponse
    try:
        response = await handler(request)
    except BadRequest as error:
        response = error.response()
    except RpcFailed as failure:
        response = from_rpc_error(failure.error)
    except web.HTTPException as error:
        message = _HTTP_MESSAGES.get(error.status, error.reason)
        response = error_response(error.status, message)
        if error.status == 405:
            response.headers["Allow"] = error.headers.get("Allow", "")
    except Exception:
        log.exception(
            "request %s %s failed (request id %s)", request.method, request.path, request_id
        )
        response = error_response(500, "Internal error")
    response.headers["X-Request-Id"] = request_id
    return response


def create_app(channel: grpc.aio.Channel) -> web.Application:
    app = web.Application(middlewares=[emporix_answers], client_max_size=MAX_BODY_BYTES)
    client = GrpcClient(channel)
    AssignmentRoutes(client).register(app)
    SegmentRoutes(client).register(app)
    return app


class Gateway:
    """A started gateway; `port` is the bound one (useful with port 0 in tests)."""

    def __init__(self, runner: web.AppRunner, channel: grpc.aio.Channel, port: int) -> None:
        self.runner = runner
        self.channel = channel
        self.port = port

    async def stop(self) -> None:
        """Stops listening, lets in-flight requests finish (the grace given at start), then
        closes the channel."""
        await self.runner.cleanup()
        await self.channel.close(None)


async def start_gateway(
    grpc_target: str, host: str, port: int, grace: float = 10.0, *, share_port: bool = False
) -> Gateway:
    """`share_port`: as for the gRPC server, the workers of `serve --workers N` share it."""
    channel = grpc.aio.insecure_channel(grpc_target)
    runner = web.AppRunner(create_app(channel), access_log=None, shutdown_timeout=grace)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=share_port)
    await site.start()
    bound = int(runner.addresses[0][1])  # the kernel's pick when port is 0
    log.info("REST gateway listening on %s:%d, calling gRPC at %s", host, bound, grpc_target)
    return Gateway(runner, channel, bound)


async def run_gateway(grpc_target: str, host: str, port: int) -> None:
    """`customer-segments gateway`: the gateway alone, in front of a remote gRPC server."""
    stop = stop_requested()
    gateway = await start_gateway(grpc_target, host, port)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
