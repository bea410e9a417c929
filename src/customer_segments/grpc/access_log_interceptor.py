"""Every call's request id and its access line.

Each call has a request id: the caller's `x-request-id`, or one made here. It is echoed in the
response's initial metadata, passed to the services (the audit log) and the log lines of the
call through the contextvar, and the access log (logger `customer_segments.access`) writes one
line per call with it: method, status code, duration, tenant, peer. This interceptor is the
outermost, so that the line covers everything the others do and refuse.
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
    Awaited,
    Context,
    Handler,
    Streaming,
    WrappingInterceptor,
    rewrapped,
)
from customer_segments.limits import MAX_REQUEST_ID_LENGTH
from customer_segments.logs import request_id

access_log = logging.getLogger("customer_segments.access")

REQUEST_ID_KEY = "x-request-id"


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


class AccessLogInterceptor(WrappingInterceptor):
    """`enabled`: whether access lines are written; request ids are given and echoed anyway."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    async def _begin(self, context: Context) -> None:
        given = _given_request_id(context)
        too_long = given is not None and len(given) > MAX_REQUEST_ID_LENGTH
        current = given if given and not too_long else os.urandom(16).hex()
        request_id.set(current)
        await context.send_initial_metadata(((REQUEST_ID_KEY, current),))
        if too_long:
            status = to_status(
                InvalidArgument(REQUEST_ID_KEY, f"must be 1 to {MAX_REQUEST_ID_LENGTH} characters")
            )
            await context.abort(status.code, status.details, status.trailing_metadata)

    def _end(
        self, method: str, context: Context, started: float, error: BaseException | None
    ) -> None:
        if not self.enabled:
            return
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        code, tenant, peer = _code(context, error), _tenant(), context.peer()
        access_log.info(
            "grpc %s %s %.1fms tenant=%s request_id=%s peer=%s",
            method,
            code,
            duration_ms,
            tenant,
            request_id.get(),
            peer,
            extra={
                "grpc_method": method,
                "grpc_code": code,
                "duration_ms": duration_ms,
                "tenant": tenant,
                "peer": peer,
            },
        )

    def wrap(self, handler: Handler, method: str) -> Handler:
        return rewrapped(
            handler,
            lambda behavior: self._awaited(method, behavior),
            lambda behavior: self._streaming(method, behavior),
        )

    def _awaited(self, method: str, behavior: Awaited) -> Awaited:
        async def handle(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                await self._begin(context)
                return await behavior(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                self._end(method, context, started, error)

        return handle

    def _streaming(self, method: str, behavior: Streaming) -> Streaming:
        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                await self._begin(context)
                async for response in behavior(request, context):
                    yield response
            except BaseException as raised:
                error = raised
                raise
            finally:
                self._end(method, context, started, error)

        return handle
