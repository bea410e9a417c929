"""What aiohttp refuses itself, before any handler or middleware runs (a header line over its
limit, too many headers, a byte a header may not hold, a Content-Encoding it cannot decode,
broken framing), answered with the documented Error body instead of aiohttp's plain text.

aiohttp answers these from its protocol object's `handle_error`; the runner below makes the
server build protocol objects that override it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import ContentEncodingError, LineTooLong

from customer_segments.gateway.errors import error_response

# Header lines aiohttp reads (its default is 8190 bytes): a long token then reaches the
# middleware and gets the documented 401 (see requests.MAX_AUTHORIZATION_LENGTH) rather than
# a 400 from the parser; a long `q` reaches the service and is told its limit.
MAX_LINE_BYTES = 64 * 1024
MAX_HEADERS = 128  # aiohttp's default, named here with the others


def _answer(status: int, error: BaseException | None) -> web.Response:
    if status != 400:
        return error_response(status, "Internal error" if status >= 500 else "Bad request")
    if isinstance(error, ContentEncodingError):
        field, problem = "Content-Encoding", "must be gzip, deflate or identity"
    elif isinstance(error, LineTooLong):
        field, problem = "headers", f"a line of the request is longer than {MAX_LINE_BYTES} bytes"
    else:
        field, problem = "headers", "the request is not valid HTTP/1.1 (a header or its framing)"
    message = f"{field}: {problem}"
    return error_response(400, message, field=field, problem=message)


class _RequestHandler(web_protocol.RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own answer first: it logs, and refuses once a response has begun.
        super().handle_error(request, status, exc, message)
        answer = _answer(status, exc)
        answer.force_close()
        return answer


class _Server(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class EmporixAppRunner(web.AppRunner):
    """An AppRunner whose connections answer aiohttp's own refusals with the Error body."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(
            app,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADERS,
            **kwargs,
        )

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
