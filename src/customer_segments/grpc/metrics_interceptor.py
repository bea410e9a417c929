"""gRPC server metrics as go-grpc-middleware's Prometheus interceptor counts them.

Counted outermost (call_interceptor.py), so that every call a handler takes is counted, those
the auth interceptor refuses too (UNAUTHENTICATED). The label children of a method are looked
up once, when its handler is first wrapped, and the per-call work is a few increments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pool
from grpc import aio

from customer_segments.grpc.interceptors import Context, Handler

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are on
    from customer_segments.metrics.definitions import Instruments
    from customer_segments.metrics.direct import DirectCounter

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


class MethodMetrics:
    """One method's label children; `handled` is filled per status code as codes occur."""

    @classmethod
    def of(cls, instruments: Instruments, method: str, handler: Handler) -> MethodMetrics:
        """The children of `method` (/package.Service/Method), whose handler is `handler`."""
        service, _, name = method.lstrip("/").rpartition("/")
        return cls(instruments, (_rpc_type(service, name, handler), service, name))

    def __init__(self, instruments: Instruments, labels: tuple[str, str, str]) -> None:
        # Imported only when metrics are on, as prometheus_client is.
        from customer_segments.metrics.direct import DirectCounter, DirectHistogram

        self._instruments = instruments
        self._labels = labels
        self.started = DirectCounter(instruments.grpc_started.labels(*labels))
        self.received = DirectCounter(instruments.grpc_received.labels(*labels))
        self.sent = DirectCounter(instruments.grpc_sent.labels(*labels))
        self._handling = DirectHistogram(instruments.grpc_handling.labels(*labels))
        self._handled: dict[grpc.StatusCode, DirectCounter] = {}

    def start(self, request: Any, request_streams: bool) -> Any:
        """The request (a stream counts its messages as they are read)."""
        self.started.inc()
        if request_streams:
            return _counted(request, self.received)
        self.received.inc()
        return request

    def ended(self, context: Context, error: BaseException | None, started: float) -> None:
        self._handling.observe(time.perf_counter() - started)
        code = _code(context, error)
        handled = self._handled.get(code)
        if handled is None:
            from customer_segments.metrics.direct import DirectCounter

            child = self._instruments.grpc_handled.labels(*self._labels, code.name)
            handled = self._handled[code] = DirectCounter(child)
        handled.inc()


def _code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    if error is None or isinstance(error, aio.AbortError):
        return context.code() or _OK  # set by abort() or set_code(), else OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the caller went away
    return grpc.StatusCode.UNKNOWN  # what gRPC answers for an exception it does not know


async def _counted(requests: AsyncIterable[Any], received: DirectCounter) -> AsyncIterator[Any]:
    async for request in requests:
        received.inc()
        yield request
