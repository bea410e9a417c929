"""http_server_request_duration_seconds, as OpenTelemetry's HTTP semantic conventions name it.

The route is the resource's template (/customer-segment/{tenant}/segments/{segmentId}), never
the path, which holds tenant and ids; a path that matches no route counts as UNMATCHED.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from customer_segments.metrics.definitions import Instruments

UNMATCHED = "UNMATCHED"
# Methods outside these are one value (the convention's _OTHER), so that a client cannot make
# up label values.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def metrics_middleware(instruments: Instruments) -> Middleware:
    duration = instruments.http_duration
    children: dict[tuple[str, str, int], Any] = {}

    @web.middleware
    async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500  # what the client gets when a handler raises
        try:
            response = await handler(request)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = 0  # the client went away: nothing was answered
            raise
        finally:
            if status:
                resource = request.match_info.route.resource
                method = request.method if request.method in _KNOWN_METHODS else "_OTHER"
                route = UNMATCHED if resource is None else resource.canonical
                key = (method, route, status)
                child = children.get(key)
                if child is None:
                    child = children[key] = duration.labels(method, route, str(status))
                child.observe(time.perf_counter() - started)

    return measured
