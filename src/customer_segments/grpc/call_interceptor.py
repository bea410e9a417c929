"""Every call's request id, access line, metrics and error status, in one wrapper per method.

Each is a job of its own (access_log_interceptor.py, metrics_interceptor.py, interceptors.py
say what each does and why), but they run as one coroutine frame around the auth
interceptor's rather than three: every resumption of a call (each answer of the database)
passes through every frame of its chain, and three interceptors also cost gRPC three
intercept_service coroutines per call. Measured with bench/observability.py (server CPU per
GetAssignment call, see the commit that made this module).

The order is that of the three interceptors this replaces: metrics outermost (they count every
call, refused ones too), then the request id and access line (the line covers everything
below), then the error status (a domain error or a bug turned into a status, the auth
interceptor's refusals too).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from grpc import aio

from customer_segments.grpc.access_log_interceptor import access_line, give_request_id
from customer_segments.grpc.interceptors import (
    Awaited,
    Context,
    Handler,
    Streaming,
    WrappingInterceptor,
    abort_with,
    behavior_of,
    drain,
    same_kind,
)
from customer_segments.grpc.metrics_interceptor import MethodMetrics

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are on
    from customer_segments.metrics.definitions import Instruments


class CallInterceptor(WrappingInterceptor):
    """`access_log`: whether access lines are written (request ids are given and echoed
    anyway); `instruments`: the process's metrics, None when they are off."""

    def __init__(self, access_log: bool, instruments: Instruments | None) -> None:
        super().__init__()
        self.access_log = access_log
        self._instruments = instruments

    def wrap(self, handler: Handler, method: str) -> Handler:
        calls = (
            None
            if self._instruments is None
            else MethodMetrics.of(self._instruments, method, handler)
        )
        behavior = behavior_of(handler)
        if inspect.isasyncgenfunction(behavior):
            # A streaming handler may also call context.write() (as health's Watch does):
            # each kind needs a wrapper of its own.
            client_streams = handler.stream_stream is not None
            wrapped: Any = self._streaming(
                method, behavior, calls, handler.request_streaming, client_streams
            )
        else:
            wrapped = self._awaited(method, behavior, calls, handler.request_streaming)
        return same_kind(handler, wrapped)

    def _awaited(
        self, method: str, behavior: Awaited, calls: MethodMetrics | None, request_streams: bool
    ) -> Awaited:
        log = self.access_log

        async def handle(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            # Asked while the call surely lives: context.peer() once a streaming call was
            # cancelled crashed a test process (SIGSEGV in grpc's peer(), a WatchEvents call).
            peer = context.peer() if log else ""
            if calls is not None:
                request = calls.start(request, request_streams)
            try:
                await give_request_id(context)
                try:
                    response = await behavior(request, context)
                except (asyncio.CancelledError, aio.AbortError):
                    raise
                except Exception as error:
                    await abort_with(context, method, error)
                    response = None
            except BaseException as error:
                if log:
                    access_line(method, context, error, started, peer)
                if calls is not None:
                    calls.ended(context, error, started)
                raise
            if log:
                access_line(method, context, None, started, peer)
            if calls is not None:
                if response is not None:
                    calls.sent.inc()
                calls.ended(context, None, started)
            return response

        return handle

    def _streaming(
        self,
        method: str,
        behavior: Streaming,
        calls: MethodMetrics | None,
        request_streams: bool,
        client_streams: bool,
    ) -> Streaming:
        log = self.access_log

        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            # Asked while the call surely lives: context.peer() once a streaming call was
            # cancelled crashed a test process (SIGSEGV in grpc's peer(), a WatchEvents call).
            peer = context.peer() if log else ""
            if calls is not None:
                request = calls.start(request, request_streams)
            try:
                await give_request_id(context)
                try:
                    async for response in behavior(request, context):
                        if calls is not None:
                            calls.sent.inc()
                        yield response
                except (asyncio.CancelledError, aio.AbortError):
                    raise
                except Exception as error:
                    if client_streams:
                        await drain(request, error)
                    await abort_with(context, method, error)
            except BaseException as error:
                if log:
                    access_line(method, context, error, started, peer)
                if calls is not None:
                    calls.ended(context, error, started)
                raise
            if log:
                access_line(method, context, None, started, peer)
            if calls is not None:
                calls.ended(context, None, started)

        return handle
