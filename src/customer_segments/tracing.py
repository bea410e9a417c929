"""OpenTelemetry traces, configured by the standard OTEL_* environment variables alone.

Tracing is on when OTEL_TRACES_EXPORTER names an exporter other than `none`, or, with that
variable unset, when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
(OTEL_SDK_DISABLED=true turns it off whatever else says). Off, this module imports nothing of
OpenTelemetry: every process of the service starts without the SDK and the instrumentations'
import cost, and a call pays nothing for them.

Every process that serves calls `traced()` around its serving (the single `serve` process,
each forked worker after the fork, the `gateway` command), naming the part it plays, and the
database's engines are handed to `trace_database()` once the store is open. The spans a REST
call makes form one trace: the gateway's HTTP server span (continuing the caller's
`traceparent`), its gRPC client span, the gRPC server span and the database's spans under it,
the context carried in gRPC metadata (by the instrumentation across processes for the
`gateway` command; by grpc/in_process.py within `serve`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from customer_segments.startup import StartupError

if TYPE_CHECKING:
    from grpc import aio
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

# What a process instruments: the `serve` process its gRPC server and its REST gateway (and,
# through trace_database, its database); the `gateway` command its HTTP server and its gRPC
# channel.
Part = Literal["grpc-server", "gateway"]

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXPORTERS = ("otlp", "console", "none")
# The OTLP default of the specification; the Python SDK alone would pick grpc.
PROTOCOLS = ("http/protobuf", "grpc")
# The samplers TracerProvider reads from OTEL_TRACES_SAMPLER (the SDK's _KNOWN_SAMPLERS).
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_SERVICE_NAME = "customer-segments"


class TracingSettings(NamedTuple):
    exporters: tuple[str, ...]  # otlp and/or console
    protocol: str  # of otlp


def _value(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def tracing_settings(environ: Mapping[str, str] = os.environ) -> TracingSettings | None:
    """What the environment asks for, None when tracing is off; StartupError naming the
    variable whose value cannot be used (the SDK would only log a warning and carry on)."""
    if _value(environ, "OTEL_SDK_DISABLED").lower() == "true":
        return None
    named = _value(environ, "OTEL_TRACES_EXPORTER").lower()
    if not named and not any(_value(environ, name) for name in ENDPOINT_VARIABLES):
        return None
    exporters = tuple(part.strip() for part in (named or "otlp").split(",") if part.strip())
    for exporter in exporters:
        if exporter not in EXPORTERS:
            raise StartupError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {exporter!r}; use one of "
                f"{', '.join(EXPORTERS)}"
            )
    exporters = tuple(exporter for exporter in exporters if exporter != "none")
    if not exporters:
        return None
    protocol = (
        _value(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or _value(environ, "OTEL_EXPORTER_OTLP_PROTOCOL")
        or PROTOCOLS[0]
    ).lower()
    if protocol not in PROTOCOLS:
        raise StartupError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r}; use one of "
            f"{', '.join(PROTOCOLS)}"
        )
    sampler = _value(environ, "OTEL_TRACES_SAMPLER").lower()
    if sampler and sampler not in SAMPLERS:
        raise StartupError(
            f"OTEL_TRACES_SAMPLER: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}"
        )
    ratio = _value(environ, "OTEL_TRACES_SAMPLER_ARG")
    if ratio and sampler.endswith("traceidratio"):
        try:
            valid = 0.0 <= float(ratio) <= 1.0
        except ValueError:
            valid = False
        if not valid:
            raise StartupError(f"OTEL_TRACES_SAMPLER_ARG: {ratio!r} is not a ratio between 0 and 1")
    return TracingSettings(exporters, protocol)


# Set while this process traces (between the start and the end of `traced`).
_provider: TracerProvider | None = None
_part: Part | None = None
# The instrumentors in use (their package declares no types: BaseInstrumentor is untyped).
_instrumented: list[Any] = []


@contextmanager
def traced(part: Part) -> Iterator[None]:
    """Traces this process while the block runs, if the environment asks for it. At its end
    the spans still queued are exported: the last calls' spans are not lost, and a collector
    that does not answer delays the stop by the exporter's timeout (OTEL_EXPORTER_OTLP_TIMEOUT,
    10 s by default)."""
    settings = tracing_settings()
    if settings is None:
        yield
        return
    global _provider, _part
    _provider, _part = _start_provider(settings), part
    try:
        _instrument(part, _provider)
        yield
    finally:
        provider, _provider, _part = _provider, None, None
        while _instrumented:
            _instrumented.pop().uninstrument()
        provider.shutdown()


def _start_provider(settings: TracingSettings) -> TracerProvider:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read here; without a name of the
    # operator's, ours rather than the SDK's "unknown_service".
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # The sampler comes from OTEL_TRACES_SAMPLER[_ARG], the batching from OTEL_BSP_*, the
    # exporters' endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*.
    provider = TracerProvider(resource=resource)
    for name in settings.exporters:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif settings.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            exporter = GrpcExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )

            exporter = HttpExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _instrument(part: Part, provider: TracerProvider) -> None:
    # Each instrumentor wraps the factory the code calls (grpc.aio.server, the channels,
    # aiohttp's Application): so this runs before the server, channel or app is made.
    # The gRPC server's spans are made by an interceptor of ours instead (see
    # grpc_server_interceptor).
    # The `serve` process's REST gateway calls its gRPC methods in process
    # (grpc/in_process.py), which makes the client spans itself (in_process_client_spans).
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    instrumentors: list[Any] = [AioHttpServerInstrumentor()]
    if part == "gateway":
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

        instrumentors.append(GrpcAioInstrumentorClient())  # type: ignore[no-untyped-call]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
        _instrumented.append(instrumentor)


class ClientSpans:
    """The gRPC client spans of in-process calls, as opentelemetry-instrumentation-grpc's
    client interceptor makes them for a channel (its scope, kind, name and attributes)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    @contextmanager
    def span(self, method: str) -> Iterator[tuple[tuple[str, str], ...]]:
        """The call's span, current while the block runs; yields the metadata that carries its
        context (W3C traceparent) to the server span."""
        from opentelemetry import propagate
        from opentelemetry import trace as trace_api

        service, _, name = method.lstrip("/").partition("/")
        attributes = {"rpc.system": "grpc", "rpc.method": name, "rpc.service": service}
        with self._tracer.start_as_current_span(
            method, kind=trace_api.SpanKind.CLIENT, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            try:
                yield tuple(carrier.items())
            except Exception as error:
                code = getattr(error, "code", None)
                if callable(code):
                    span.set_attribute("rpc.grpc.status_code", code().value[0])
                raise
            span.set_attribute("rpc.grpc.status_code", 0)


def in_process_client_spans() -> ClientSpans | None:
    """The client spans of the `serve` process's in-process gRPC calls when it traces."""
    if _provider is None or _part != "grpc-server":
        return None
    return ClientSpans(_grpc_tracer(_provider))


def _grpc_tracer(provider: TracerProvider) -> trace.Tracer:
    from opentelemetry import trace as trace_api
    from opentelemetry.instrumentation.grpc.version import __version__

    # The scope the instrumentation's spans carry: dashboards and tests select by it.
    return trace_api.get_tracer(
        "opentelemetry.instrumentation.grpc",
        __version__,
        provider,
        schema_url="https://opentelemetry.io/schemas/1.11.0",
    )


def grpc_server_interceptor() -> aio.ServerInterceptor | None:  # type: ignore[type-arg]
    """The interceptor that makes the gRPC server's spans, outermost, when this process traces
    its gRPC server; None otherwise. opentelemetry-instrumentation-grpc's own (which
    GrpcAioInstrumentorServer inserts into every grpc.aio.server) does the same at a higher
    cost per call: see grpc/tracing_interceptor.py."""
    if _provider is None or _part != "grpc-server":
        return None
    from opentelemetry.instrumentation.grpc import _excluded_service_filter

    from customer_segments.grpc.tracing_interceptor import TracingInterceptor

    return TracingInterceptor(_grpc_tracer(_provider), _excluded_service_filter())


def trace_database(engines: Sequence[AsyncEngine], dialect: str) -> None:
    """Database spans under the span of the call that runs the statement, when tracing is on.

    PostgreSQL's are asyncpg's: the hottest read runs on the asyncpg connection itself
    (store/database.py, FastRead), which SQLAlchemy never sees, and asyncpg also sees the
    statements SQLAlchemy runs, so each statement is one span. SQLite's are SQLAlchemy's,
    on each of the store's engines."""
    if _provider is None:
        return
    instrumentor: Any
    if dialect == "postgresql":
        instrumentor = _asyncpg_instrumentor(_provider)
        instrumentor.instrument(tracer_provider=_provider)
    else:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentor = SQLAlchemyInstrumentor()
        instrumentor.instrument(
            tracer_provider=_provider,
            engines=[engine.sync_engine for engine in engines],
            # It declares SQLAlchemy < 2.1, and would skip 2.1 with a warning; what it uses,
            # the engine's cursor events, is the same in 2.1 (tests/e2e/test_traces.py).
            skip_dep_check=True,
        )
    _instrumented.append(instrumentor)


def _asyncpg_instrumentor(provider: TracerProvider) -> Any:
    """opentelemetry-instrumentation-asyncpg's instrumentor, which skips the statements of a
    call the sampler dropped when the sampler follows the parent's decision (the parentbased_*
    ones): the statement's span would be dropped too, yet the instrumentation would strip its
    SQL, gather its attributes and make it current first (at 10% sampling, nine calls in ten)."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    sampler = provider.sampler
    # A dropped local parent's children are dropped: ParentBased's default, which the
    # OTEL_TRACES_SAMPLER values keep.
    follows_parent = (
        isinstance(sampler, ParentBased)
        and getattr(sampler, "_local_parent_not_sampled", None) is ALWAYS_OFF
    )
    if not follows_parent:
        return AsyncPGInstrumentor()  # type: ignore[no-untyped-call]

    def dropped() -> bool:
        parent = trace.get_current_span().get_span_context()
        return parent.is_valid and not parent.is_remote and not parent.trace_flags.sampled

    class FollowingParent(AsyncPGInstrumentor):
        # BaseInstrumentor makes one instance per class, kept in `_instance`: this class's
        # own, not the instrumentation's (which a subclass would otherwise inherit).
        _instance = None

        async def _do_execute(self, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if dropped():
                return await func(*args, **kwargs)
            return await super()._do_execute(  # type: ignore[no-untyped-call]
                func, instance, args, kwargs
            )

        async def _do_cursor_execute(self, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if dropped():
                return await func(*args, **kwargs)
            return await super()._do_cursor_execute(  # type: ignore[no-untyped-call]
                func, instance, args, kwargs
            )

        async def _do_prepared_execute(
            self, func: Any, instance: Any, args: Any, kwargs: Any
        ) -> Any:
            if dropped():
                return await func(*args, **kwargs)
            return await super()._do_prepared_execute(  # type: ignore[no-untyped-call]
                func, instance, args, kwargs
            )

    return FollowingParent()  # type: ignore[no-untyped-call]
