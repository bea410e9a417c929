"""gRPC server metrics as go-grpc-middleware's Prometheus interceptor counts them.

Outermost, so that every call a handler takes is counted, those the auth interceptor refuses
too (UNAUTHENTICATED). The label children of a method are looked up once, when its handler is
first wrapped, and the per-call work is a few increments.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc import aio

from customer_segments.grpc.interceptors import (
    Context,
    Handler,
    WrappingInterceptor,
    behavior_of,
    same_kind,
)
from customer_segments.metrics.definitions import Instruments

_RPC_TYPES = {
    (False, False): "unary",
    (True, False): "client_stream",
    (False, True): "server_stream",
    (True, True): "bidi_stream",
}
_OK = grpc.StatusCode.OK


def _rpc_type(service: str, method: str, handler: Handler) -> str:
    """From the method's descriptor: the handler may be of another kind (the auth
    interceptor's refusal of a unary call reads it as a stream)."""
    try:
        found = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
        streams = (found.client_streaming, found.server_streaming)
    except KeyError:
        streams = (handler.request_streaming, handler.response_streaming)
    return _RPC_TYPES[streams]


class _MethodMetrics:
    """One method's label children; `handled` is filled per status code as codes occur."""

    def __init__(self, instruments: Instruments, labels: tuple[str, str, str]) -> None:
        self._instruments = instruments
        self._labels = labels
        self.started = instruments.grpc_started.labels(*labels)
        self.received = instruments.grpc_received.labels(*labels)
        self.sent = instruments.grpc_sent.labels(*labels)
        self._handling = instruments.grpc_handling.labels(*labels)
        self._handled: dict[grpc.StatusCode, Any] = {}

    def start(self, request: Any, request_streams: bool) -> tuple[Any, float]:
        """The request (a stream counts its messages as they are read) and the start time."""
        self.started.inc()
        if request_streams:
            request = _counted(request, self.received)
        else:
            self.received.inc()
        return request, time.perf_counter()

    def ended(self, context: Context, error: BaseException | None, started: float) -> None:
        self._handling.observe(time.perf_counter() - started)
        code = _code(context, error)
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = self._instruments.grpc_handled.labels(
                *self._labels, code.name
            )
        handled.inc()


def _code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    if error is None or isinstance(error, aio.AbortError):
        return context.code() or _OK  # set by abort() or set_code(), else OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the caller went away
    return grpc.StatusCode.UNKNOWN  # what gRPC answers for an exception it does not know


async def _counted(requests: AsyncIterable[Any], received: Any) -> AsyncIterator[Any]:
    async for request in requests:
        received.inc()
        yield request


def _one_response(
    behavior: Callable[..., Any], calls: _MethodMetrics, request_streams: bool
) -> Callable[..., Any]:
    """A handler that returns its answer (or, like health's Watch, writes it itself)."""

    async def handle(request: Any, context: Context) -> Any:
        request, started = calls.start(request, request_streams)
        try:
            response = await behavior(request, context)
        except BaseException as error:
            calls.ended(context, error, started)
            raise
        if response is not None:
            calls.sent.inc()
        calls.ended(context, None, started)
        return response

    return handle


def _streamed_responses(
    behavior: Callable[..., AsyncIterator[Any]], calls: _MethodMetrics, request_streams: bool
) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
        request, started = calls.start(request, request_streams)
        try:
            async for response in behavior(request, context):
                calls.sent.inc()
                yield response
        except BaseException as error:
            calls.ended(context, error, started)
            raise
        calls.ended(context, None, started)

    return handle


class MetricsInterceptor(WrappingInterceptor):
    def __init__(self, instruments: Instruments) -> None:
        super().__init__()
        self._instruments = instruments

    def wrap(self, handler: Handler, method: str) -> Handler:
        service, _, name = method.lstrip("/").rpartition("/")
        calls = _MethodMetrics(
            self._instruments, (_rpc_type(service, name, handler), service, name)
        )
        behavior = behavior_of(handler)
        request_streams = handler.request_streaming
        if inspect.isasyncgenfunction(behavior):
            return same_kind(handler, _streamed_responses(behavior, calls, request_streams))
        return same_kind(handler, _one_response(behavior, calls, request_streams))
