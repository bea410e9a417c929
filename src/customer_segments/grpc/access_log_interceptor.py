"""Every call's request id and its access line.

Each call has a request id: the caller's `x-request-id`, or one made here. It is echoed in the
response's trailing metadata (initial metadata would cost a send of its own per call: about a
tenth of a GetAssignment's server time, measured with py-spy), passed to the services (the
audit log) and the log lines of the call through the contextvar, and the access log (logger
`customer_segments.access`) writes one line per call with it: method, status code, duration,
tenant, peer. This interceptor is the outermost, so that the line covers everything the
others do and refuse.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from customer_segments.domain.errors import InvalidArgument
from customer_segments.grpc.auth_interceptor import caller
from customer_segments.grpc.errors import to_status
from customer_segments.grpc.interceptors import (
    REQUEST_ID_KEY,
    Awaited,
    Context,
    Handler,
    Streaming,
    WrappingInterceptor,
    rewrapped,
    with_request_id,
)
from customer_segments.limits import MAX_REQUEST_ID_LENGTH
from customer_segments.logs import request_id

access_log = logging.getLogger("customer_segments.access")


def _given_request_id(context: Context) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == REQUEST_ID_KEY:
            return value if isinstance(value, str) else None
    return None


def _tenant() -> str | None:
    try:
        return caller().tenant
    except LookupError:  # a public service, or a call refused before its token was read
        return None


def _code(context: Context, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    # An error no inner interceptor turned into a status: gRPC answers UNKNOWN.
    return grpc.StatusCode.OK.name if error is None else grpc.StatusCode.UNKNOWN.name


class _Served:
    """One call, as `async with`: its request id on entering, its access line on leaving
    (a class rather than a generator-based context manager: it runs on every call)."""

    __slots__ = ("context", "log", "method", "started")

    def __init__(self, log: bool, method: str, context: Context) -> None:
        self.log = log
        self.method = method
        self.context = context
        self.started = time.perf_counter()

    async def __aenter__(self) -> None:
        try:
            await self._give_request_id()
        except BaseException as error:  # refused: its line is written all the same
            self._log_line(error)
            raise

    async def __aexit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        self._log_line(error)

    async def _give_request_id(self) -> None:
        given = _given_request_id(self.context)
        too_long = given is not None and len(given) > MAX_REQUEST_ID_LENGTH
        current = given if given and not too_long else os.urandom(16).hex()
        request_id.set(current)
        self.context.set_trailing_metadata(((REQUEST_ID_KEY, current),))
        if too_long:
            status = to_status(
                InvalidArgument(REQUEST_ID_KEY, f"must be 1 to {MAX_REQUEST_ID_LENGTH} characters")
            )
            await self.context.abort(
                status.code, status.details, with_request_id(status.trailing_metadata)
            )

    def _log_line(self, error: BaseException | None) -> None:
        if not self.log or not access_log.isEnabledFor(logging.INFO):  # nothing to compute
            return
        duration_ms = round((time.perf_counter() - self.started) * 1000, 3)
        code, tenant, peer = _code(self.context, error), _tenant(), self.context.peer()
        access_log.info(
            "grpc %s %s %.1fms tenant=%s request_id=%s peer=%s",
            self.method,
            code,
            duration_ms,
            tenant,
            request_id.get(),
            peer,
            extra={
                "grpc_method": self.method,
                "grpc_code": code,
                "duration_ms": duration_ms,
                "tenant": tenant,
                "peer": peer,
            },
        )


class AccessLogInterceptor(WrappingInterceptor):
    """`enabled`: whether access lines are written; request ids are given and echoed anyway."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def wrap(self, handler: Handler, method: str) -> Handler:
        return rewrapped(
            handler,
            lambda behavior: self._awaited(method, behavior),
            lambda behavior: self._streaming(method, behavior),
        )

    def _awaited(self, method: str, behavior: Awaited) -> Awaited:
        async def handle(request: Any, context: Context) -> Any:
            async with _Served(self.enabled, method, context):
                return await behavior(request, context)

        return handle

    def _streaming(self, method: str, behavior: Streaming) -> Streaming:
        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            async with _Served(self.enabled, method, context):
                async for response in behavior(request, context):
                    yield response

        return handle
