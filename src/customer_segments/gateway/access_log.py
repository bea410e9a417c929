"""One access line per REST request (logger `customer_segments.access`, as the gRPC calls'):
method, route template (never the raw path, which holds ids), status, duration, the tenant of
the path, request id."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from customer_segments.gateway.grpc_client import REQUEST_ID

access_log = logging.getLogger("customer_segments.access")


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so that answers of the other middlewares (a CORS preflight) are logged."""
    if not access_log.isEnabledFor(logging.INFO):  # nothing to compute (--log-level WARNING)
        return await handler(request)
    started = time.perf_counter()
    status = 500  # what aiohttp answers for an exception no middleware turned into one
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        tenant = request.match_info.get("tenant")
        given_id = request.get(REQUEST_ID)
        access_log.info(
            "http %s %s %d %.1fms tenant=%s request_id=%s",
            request.method,
            route,
            status,
            duration_ms,
            tenant,
            given_id,
            extra={
                "http_method": request.method,
                "http_route": route,
                "http_status": status,
                "duration_ms": duration_ms,
                "tenant": tenant,
                "request_id": given_id,
            },
        )
