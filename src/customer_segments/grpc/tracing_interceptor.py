"""The gRPC server span of every call (imported only when tracing is on, see tracing.py).

What opentelemetry-instrumentation-grpc's aio server interceptor makes, at less cost per
call: that interceptor wraps the handler again on every call, and builds the span's attributes
and a proxy of the servicer context before it knows whether the call is sampled. Here the
handler is wrapped once per method, the sampler decides first, and a call it drops (nine in
ten at 10% sampling) gets its non-recording span made current and nothing else: attributes and
the context proxy (which records the status code on the span) only matter to a span that is
exported. A sampled call's span is that interceptor's: its scope, name, kind, attributes,
status and exception events (tests/e2e/test_traces.py, tests/unit/test_tracing_interceptor.py).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import _aio_server
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from customer_segments.grpc.interceptors import (
    Awaited,
    Context,
    Handler,
    Streaming,
    WrappingInterceptor,
    behavior_of,
    same_kind,
)

# The attribute names of the instrumentation's own spans (semconv 1.11, its schema).
_OK_CODE = grpc.StatusCode.OK.value[0]


def span_attributes(method: str, context: Context) -> dict[str, Any]:
    """The attributes opentelemetry-instrumentation-grpc gives a server span (its
    OpenTelemetryServerInterceptor._start_span)."""
    service, _, name = method.lstrip("/").partition("/")
    attributes: dict[str, Any] = {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": _OK_CODE,
        "rpc.method": name,
        "rpc.service": service,
    }
    metadata = dict(context.invocation_metadata() or ())
    if "user-agent" in metadata:
        attributes["rpc.user_agent"] = metadata["user-agent"]
    peer = context.peer()
    if not peer.startswith("unix:"):
        try:
            ip, port = peer.split(",")[0].split(":", 1)[1].rsplit(":", 1)
        except IndexError:
            return attributes
        ip = unquote(ip)
        attributes["net.peer.ip"] = ip
        attributes["net.peer.port"] = port
        if ip in ("[::1]", "127.0.0.1"):
            attributes["net.peer.name"] = "localhost"
    return attributes


class TracingInterceptor(WrappingInterceptor):
    """Outermost: the span covers everything the other interceptors do. `filter_`: calls
    for which it returns False get no span (OTEL_PYTHON_GRPC_EXCLUDED_SERVICES)."""

    def __init__(self, tracer: trace.Tracer, filter_: Any = None) -> None:
        super().__init__()
        self._tracer = tracer
        self._filter = filter_

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Handler:
        if not is_instrumentation_enabled() or (
            self._filter is not None and not self._filter(handler_call_details)
        ):
            return await continuation(handler_call_details)  # type: ignore[no-any-return]
        return await super().intercept_service(continuation, handler_call_details)

    def wrap(self, handler: Handler, method: str) -> Handler:
        behavior = behavior_of(handler)
        if inspect.isasyncgenfunction(behavior):
            return same_kind(handler, self._streaming(method, behavior))
        return same_kind(handler, self._awaited(method, behavior))

    def _started(self, method: str, context: Context) -> tuple[trace.Span, Any, Context]:
        """The call's span, begun under the caller's context (from its metadata); the
        context to make current; the servicer context the handler gets."""
        parent = propagate.extract(dict(context.invocation_metadata() or ()))
        span = self._tracer.start_span(method, parent, kind=trace.SpanKind.SERVER)
        if span.is_recording():
            span.set_attributes(span_attributes(method, context))
            context = _aio_server._OpenTelemetryAioServicerContext(context, span)  # type: ignore[assignment,no-untyped-call]
        return span, trace.set_span_in_context(span, parent), context

    def _awaited(self, method: str, behavior: Awaited) -> Awaited:
        async def handle(request: Any, context: Context) -> Any:
            span, current, context = self._started(method, context)
            token = context_api.attach(current)
            try:
                return await behavior(request, context)
            except Exception as error:
                _recorded(span, error)
                raise
            finally:
                context_api.detach(token)
                span.end()

        return handle

    def _streaming(self, method: str, behavior: Streaming) -> Streaming:
        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            span, current, context = self._started(method, context)
            token = context_api.attach(current)
            try:
                async for response in behavior(request, context):
                    yield response
            except Exception as error:
                _recorded(span, error)
                raise
            finally:
                context_api.detach(token)
                span.end()

        return handle


def _recorded(span: trace.Span, error: Exception) -> None:
    """As the instrumentation does: an error other than a bare Exception (which is how
    grpc.aio's abort() ends a handler) is an event of the span; trace.use_span, which the
    instrumentation's start_as_current_span uses, records every one once more."""
    if not span.is_recording():
        return
    if type(error) is not Exception:
        span.record_exception(error)
    span.record_exception(error)
