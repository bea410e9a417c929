"""The asyncpg instrumentor of tracing.py against opentelemetry-instrumentation-asyncpg's
own, on PostgreSQL: under a sampled call the same statement spans; under a call the
parent-based sampler dropped, no span from either (ours skips the work of making one)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
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


def _wrapped_methods() -> list[tuple[type, str]]:
    """What the instrumentation wraps (its _instrument)."""
    from asyncpg import connection, cursor, prepared_stmt
    from opentelemetry.instrumentation.asyncpg import _PREPARED_STMT_METHODS

    names = [
        (connection.Connection, ("execute", "executemany", "fetch", "fetchval", "fetchrow")),
        (cursor.Cursor, ("fetch", "forward", "fetchrow")),
        (cursor.CursorIterator, ("__anext__",)),
        (prepared_stmt.PreparedStatement, _PREPARED_STMT_METHODS),
    ]
    return [(cls, name) for cls, methods in names for name in methods if name in vars(cls)]


@pytest.fixture(autouse=True)
def bare_asyncpg() -> Iterator[None]:
    """asyncpg as it comes, whatever another test of this process left instrumented (an
    outer wrapper's span would be the statements' parent); restored afterwards."""
    saved = {(cls, name): vars(cls)[name] for cls, name in _wrapped_methods()}
    for (cls, name), method in saved.items():
        while hasattr(method, "__wrapped__"):
            method = method.__wrapped__
        setattr(cls, name, method)
    # The instrumentor is one instance per process, which refuses to instrument twice.
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    instrumented = instrumentor._is_instrumented_by_opentelemetry
    instrumentor._is_instrumented_by_opentelemetry = False
    yield
    instrumentor._is_instrumented_by_opentelemetry = instrumented
    for (cls, name), method in saved.items():
        setattr(cls, name, method)


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


async def compare(postgres_url: str, sampled: bool) -> None:
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


@pytest.mark.parametrize("sampled", [True, False])
def test_statement_spans_are_the_instrumentations(postgres_url: str, sampled: bool) -> None:
    """In a process of its own: instrumentation is process-wide state, which other tests of
    a pytest worker leave changed (an outer wrapper's span became the statements' parent)."""
    program = (
        "import asyncio, sys; from tests.integration.test_traced_statements import compare; "
        "asyncio.run(compare(sys.argv[1], sys.argv[2] == 'sampled'))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", program, postgres_url, "sampled" if sampled else "dropped"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr


def test_a_sampler_that_ignores_the_parent_gets_the_instrumentation_itself() -> None:
    assert type(_asyncpg_instrumentor(TracerProvider(sampler=ALWAYS_ON))) is AsyncPGInstrumentor
