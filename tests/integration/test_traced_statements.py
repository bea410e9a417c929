"""The asyncpg instrumentor of tracing.py against opentelemetry-instrumentation-asyncpg's
own, on PostgreSQL: under a sampled call the same statement spans; under a call the
parent-based sampler dropped, no span from either (ours skips the work of making one)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from customer_segments.tracing import _asyncpg_instrumentor

DROPPED = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=False)


async def statements(url: str) -> None:
    """Each kind of call the instrumentation wraps, once."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("select 1")
        await connection.fetchrow("select $1::int", 2)
        await connection.fetch("/* a comment */ select 3")
        await (await connection.prepare("select 4")).fetch()
        async with connection.transaction():
            async for _ in connection.cursor("select 5"):
                pass
    finally:
        await connection.close()


def described(span: ReadableSpan) -> tuple[Any, ...]:
    return (
        span.name,
        span.kind,
        sorted(dict(span.attributes or {}).items()),
        span.status.status_code,
    )


async def traced(instrumentor: Any, provider: TracerProvider, url: str, sampled: bool) -> list[Any]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)
    try:
        if sampled:
            with provider.get_tracer("test").start_as_current_span("call") as call:
                await statements(url)
            parent = call.get_span_context().span_id
        else:
            with trace.use_span(NonRecordingSpan(DROPPED)):
                await statements(url)
            parent = DROPPED.span_id
    finally:
        instrumentor.uninstrument()
    spans = [span for span in exporter.get_finished_spans() if span.name != "call"]
    assert all(span.parent is not None and span.parent.span_id == parent for span in spans)
    return [described(span) for span in spans]


@pytest.mark.parametrize("sampled", [True, False])
async def test_statement_spans_are_the_instrumentations(postgres_url: str, sampled: bool) -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    ours = _asyncpg_instrumentor(provider)
    assert type(ours) is not AsyncPGInstrumentor  # the one that skips dropped calls
    theirs = await traced(
        AsyncPGInstrumentor(),  # type: ignore[no-untyped-call]
        provider,
        postgres_url,
        sampled,
    )
    assert await traced(ours, provider, postgres_url, sampled) == theirs
    assert (len(theirs) >= 7) if sampled else not theirs, theirs
    assert DROPPED.trace_flags == TraceFlags.DEFAULT  # not sampled


def test_a_sampler_that_ignores_the_parent_gets_the_instrumentation_itself() -> None:
    assert type(_asyncpg_instrumentor(TracerProvider(sampler=ALWAYS_ON))) is AsyncPGInstrumentor
