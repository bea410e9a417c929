"""CORS (Fetch standard), off unless origins are configured (`--cors-origins`).

A small middleware rather than aiohttp-cors: that library is configured route by route (a
route added without it silently has no CORS), answers a preflight 200 and refuses one with a
plain-text 403; here one policy covers every path, a preflight is 204, and what is not allowed
simply gets no CORS headers (the browser then refuses it), while the request itself is
answered as ever, with the Error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Content-Encoding, If-Match, If-None-Match, X-Request-Id, "
    "X-Total-Count, Accept-Language, Content-Language"
)
# What a script may read of an answer beyond the CORS-safelisted headers.
EXPOSED_HEADERS = (
    "ETag, Location, Retry-After, X-Request-Id, X-Total-Count, X-Next-Cursor, X-Prev-Cursor"
)
# How long a browser may keep a preflight's answer (seconds).
MAX_AGE = "600"


def cors_middleware(origins: tuple[str, ...]) -> Middleware:
    """`origins`: exact origins (`https://shop.example`), or `*` for any."""
    any_origin = "*" in origins
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not (any_origin or origin in allowed):
            response = await handler(request)
        elif request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ALLOWED_METHODS,
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": MAX_AGE,
                },
            )
        else:
            response = await handler(request)
            # The origin itself, not `*`: an answer that varies by Authorization must not be
            # readable by any origin when `*` was not configured, and with `*` this still
            # works for requests that send credentials.
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        # Whether the answer holds CORS headers depends on Origin: caches must keep them apart.
        vary = response.headers.get("Vary")
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
        return response

    return cors
