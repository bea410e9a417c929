"""The gRPC server spans of grpc/tracing_interceptor.py against those of
opentelemetry-instrumentation-grpc's aio interceptor, which it replaces: the same exported
spans for sampled calls (name, kind, parent, attributes, status, events), and for calls the
sampler drops none, with the same non-recording span current in the handler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc import aio
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from customer_segments.grpc.tracing_interceptor import TracingInterceptor

SERVICE = "test.v1.Echo"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


class Seen:
    """The span context current in the handler of each call."""

    def __init__(self) -> None:
        self.contexts: list[trace.SpanContext] = []

    def add(self) -> None:
        self.contexts.append(trace.get_current_span().get_span_context())


def handlers(seen: Seen) -> grpc.GenericRpcHandler[Any, Any]:
    async def ok(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        seen.add()
        return request

    async def refused(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        seen.add()
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise AssertionError("abort returned")

    async def broken(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        seen.add()
        raise ValueError("a bug")

    async def streamed(
        request: bytes, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        seen.add()
        yield request
        yield request

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Refused": grpc.unary_unary_rpc_method_handler(refused),
            "Broken": grpc.unary_unary_rpc_method_handler(broken),
            "Streamed": grpc.unary_stream_rpc_method_handler(streamed),
        },
    )


def described(span: ReadableSpan) -> dict[str, Any]:
    attributes = dict(span.attributes or {})
    attributes.pop("net.peer.port")  # each server's client has a port of its own
    return {
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
        "name": span.name,
        "kind": span.kind,
        "trace_id": f"{span.context.trace_id:032x}",
        "parent": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": attributes,
        "status": (span.status.status_code, span.status.description),
        "events": [(event.name, sorted(dict(event.attributes or {}))) for event in span.events],
    }


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def calls(interceptor: Any, sampled: bool) -> Seen:
    """Every method of the test service once, under a caller's trace (`sampled` or not)."""
    seen = Seen()
    server = aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers((handlers(seen),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    flags = "01" if sampled else "00"
    metadata = (("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-{flags}"),)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert (
                await channel.unary_unary(f"/{SERVICE}/Ok", None, None)(b"x", metadata=metadata)
                == b"x"
            )
            for method, code in (("Refused", "NOT_FOUND"), ("Broken", "UNKNOWN")):
                with pytest.raises(aio.AioRpcError) as refused:
                    await channel.unary_unary(f"/{SERVICE}/{method}", None, None)(
                        b"x", metadata=metadata
                    )
                assert refused.value.code().name == code
            answers = channel.unary_stream(f"/{SERVICE}/Streamed", None, None)(
                b"y", metadata=metadata
            )
            assert [answer async for answer in answers] == [b"y", b"y"]
    finally:
        await server.stop(None)
    return seen


def tracer(provider: TracerProvider) -> trace.Tracer:
    return trace.get_tracer(
        "opentelemetry.instrumentation.grpc",
        "0",
        provider,
        schema_url="https://opentelemetry.io/schemas/1.11.0",
    )


@pytest.mark.parametrize("sampled", [True, False])
async def test_the_spans_are_the_instrumentations(
    provider: tuple[TracerProvider, InMemorySpanExporter], sampled: bool
) -> None:
    tracer_provider, exporter = provider
    instrumentations = aio_server_interceptor(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    theirs_seen = await calls(instrumentations, sampled)
    theirs = sorted(map(described, exporter.get_finished_spans()), key=lambda s: s["name"])
    exporter.clear()
    ours_seen = await calls(TracingInterceptor(tracer(tracer_provider)), sampled)
    ours = sorted(map(described, exporter.get_finished_spans()), key=lambda s: s["name"])

    assert ours == theirs
    assert len(ours) == (4 if sampled else 0)
    if sampled:
        assert {span["parent"] for span in ours} == {CALLER_SPAN}
        assert {span["trace_id"] for span in ours} == {TRACE_ID}
    # In the handler: a span of the caller's trace, recording or not as the caller said.
    for seen in (theirs_seen, ours_seen):
        assert [
            (f"{c.trace_id:032x}", c.is_valid, c.trace_flags.sampled) for c in seen.contexts
        ] == [(TRACE_ID, True, sampled)] * 4
