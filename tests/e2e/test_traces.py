"""Traces as an operator's collector receives them: a real `serve` process, configured by
OTEL_* variables alone, exports over OTLP/HTTP to a receiver on loopback that decodes them."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from customersegment.v1 import (
    assignment_pb2,
    assignment_pb2_grpc,
    segment_pb2,
    segment_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from customer_segments.store.database import Database
from customer_segments.store.migrate import upgrade_to_head
from tests.conftest import fresh_postgres_database
from tests.e2e.test_service_process import (
    CLI,
    NO_METRICS,
    Service,
    free_port,
    logged_process,
    start,
    wait_for_port,
)

GRPC_SCOPE = "opentelemetry.instrumentation.grpc"
HTTP_SCOPE = "opentelemetry.instrumentation.aiohttp_server"
DB_SCOPES = ("opentelemetry.instrumentation.sqlalchemy", "opentelemetry.instrumentation.asyncpg")
GET_ASSIGNMENT = "/customersegment.v1.CustomerAssignmentService/GetAssignment"


@dataclass(frozen=True)
class Exported:
    service_name: str
    scope: str
    span: Span


class OtlpReceiver:
    """POST /v1/traces with application/x-protobuf, as a collector's OTLP/HTTP receiver; in a
    thread of its own, so that the test's blocking calls never hold up an export."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.requests = 0
        self.spans: list[Exported] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(await request.read())
        self.requests += 1
        for resource_spans in export.resource_spans:
            names = [
                attribute.value.string_value
                for attribute in resource_spans.resource.attributes
                if attribute.key == "service.name"
            ]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(Exported(names[0], scope_spans.scope.name, span))
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def trace(self, trace_id: bytes) -> list[Exported]:
        return [exported for exported in self.spans if exported.span.trace_id == trace_id]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


# Each process of the service writes, as it exits, the OpenTelemetry modules it imported.
SITECUSTOMIZE = """
import atexit, os, sys

def _report():
    path = os.path.join(os.environ["IMPORTED_MODULES_DIR"], str(os.getpid()))
    with open(path, "w") as out:
        out.write(" ".join(sys.argv) + "\\n")
        out.write("\\n".join(m for m in sys.modules if m.startswith("opentelemetry")))

atexit.register(_report)
"""


def report_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder where each process started from here on reports the OpenTelemetry modules it
    imported (a sitecustomize on PYTHONPATH, run by each interpreter at start)."""
    folder = tmp_path / "imported"
    folder.mkdir()
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("IMPORTED_MODULES_DIR", str(folder))
    return folder


def imported_by_process(folder: Path) -> dict[str, set[str]]:
    """{"serve": modules} of the `serve` process once it has exited."""
    reports: dict[str, set[str]] = {}
    for report in folder.iterdir():
        command, *modules = report.read_text().splitlines()
        _program, *arguments = command.split()
        if arguments[:1] == ["serve"]:
            reports["serve"] = set(modules)  # not `customer-segments token`'s
    return reports


def stop(service: Service) -> None:
    """SIGTERM, as an orchestrator stops it: the processes export what they still hold."""
    service.process.terminate()
    assert service.process.wait(timeout=60) == 0


def assignment_in_store(service: Service) -> None:
    with grpc.insecure_channel(service.target) as channel:
        segment_pb2_grpc.SegmentServiceStub(channel).CreateSegment(
            segment_pb2.CreateSegmentRequest(
                tenant="acme",
                segment=segment_pb2.Segment(id="gold", name={"en": "Gold"}, site_code="main"),
            ),
            metadata=tuple(service.metadata),
            timeout=30,
        )
        assignment_pb2_grpc.CustomerAssignmentServiceStub(channel).UpsertAssignment(
            assignment_pb2.UpsertAssignmentRequest(
                tenant="acme", segment_id="gold", customer_id="c1"
            ),
            metadata=tuple(service.metadata),
            timeout=30,
        )


def rest_get(service: Service, headers: dict[str, str], base: str | None = None) -> None:
    """GET of the assignment through the service's gateway, or the one at `base`."""
    request = urllib.request.Request(
        f"{base or service.http}/customer-segment/acme/segments/gold/customers/c1",
        headers={"Authorization": f"Bearer {service.admin_token}", **headers},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read())["customer"] == {"id": "c1"}


def grpc_get(service: Service) -> None:
    with grpc.insecure_channel(service.target) as channel:
        got = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel).GetAssignment(
            assignment_pb2.GetAssignmentRequest(tenant="acme", segment_id="gold", customer_id="c1"),
            metadata=tuple(service.metadata),
            timeout=30,
        )
    assert got.assignment.customer.id == "c1"


def one(spans: list[Exported], what: str) -> Exported:
    assert len(spans) == 1, f"{what}: {[(s.scope, s.span.name) for s in spans]}"
    return spans[0]


def children(spans: list[Exported], parent: Exported, scope: str, kind: int) -> list[Exported]:
    return [
        exported
        for exported in spans
        if exported.span.parent_span_id == parent.span.span_id
        and exported.scope == scope
        and exported.span.kind == kind
    ]


def database_spans(spans: list[Exported], parent: Exported) -> list[Exported]:
    found = [
        exported
        for exported in spans
        if exported.span.parent_span_id == parent.span.span_id and exported.scope in DB_SCOPES
    ]
    statements = [
        exported
        for exported in found
        if any(
            attribute.key in ("db.statement", "db.query.text")
            for attribute in exported.span.attributes
        )
    ]
    assert statements, [(s.scope, s.span.name) for s in found]
    return found


@pytest.fixture(params=["sqlite", "postgresql", "workers"])
def serve_arguments(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The embedded database, a migrated PostgreSQL one (their spans come from different
    instrumentations, see tracing.trace_database), or forked workers."""
    if request.param != "postgresql":
        yield ["--workers", "2"] if request.param == "workers" else []
        return
    with fresh_postgres_database("cs_traces") as url:

        async def migrate() -> None:
            database = Database(url)
            await upgrade_to_head(database)
            await database.dispose()

        asyncio.run(migrate())
        yield ["--database-url", url]


def caller_trace() -> tuple[bytes, bytes, dict[str, str]]:
    """A caller's trace id and span id, and the `traceparent` header that carries them."""
    trace_id, caller_span_id = secrets.token_bytes(16), secrets.token_bytes(8)
    return (
        trace_id,
        caller_span_id,
        {"traceparent": f"00-{trace_id.hex()}-{caller_span_id.hex()}-01"},
    )


def rest_trace(receiver: OtlpReceiver, trace_id: bytes, caller_span_id: bytes) -> None:
    """The REST GET's trace: gateway server span under the caller's, gRPC client span, gRPC
    server span, database spans, all of the service."""
    spans = receiver.trace(trace_id)
    http = one(
        [s for s in spans if s.scope == HTTP_SCOPE and s.span.parent_span_id == caller_span_id],
        "the gateway's server span continuing the caller's",
    )
    assert http.span.kind == Span.SPAN_KIND_SERVER
    client = one(children(spans, http, GRPC_SCOPE, Span.SPAN_KIND_CLIENT), "gRPC client span")
    server = one(children(spans, client, GRPC_SCOPE, Span.SPAN_KIND_SERVER), "gRPC server span")
    assert server.span.name == GET_ASSIGNMENT
    database_spans(spans, server)
    assert {s.service_name for s in spans} == {"segments-under-test"}


def traced_env(monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "segments-under-test")
    # Nothing is exported on a schedule during the test: what arrives was flushed at the stop.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")


def test_a_rest_call_is_one_trace_from_the_callers_traceparent_to_the_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: OtlpReceiver,
    serve_arguments: list[str],
) -> None:
    imported = report_imports(tmp_path, monkeypatch)
    traced_env(monkeypatch, receiver)
    service = start(tmp_path, *serve_arguments)
    try:
        assignment_in_store(service)
        trace_id, caller_span_id, traceparent = caller_trace()
        rest_get(service, traceparent)
        grpc_get(service)
    finally:
        stop(service)

    rest_trace(receiver, trace_id, caller_span_id)
    # Its access lines, the gateway's and the in-process gRPC call's, carry the trace id
    # (JSON: the service's output is no terminal), both of the process that served it.
    access = [
        line
        for line in map(json.loads, service.output().splitlines())
        if line["logger"] == "customer_segments.access" and line["trace_id"] == trace_id.hex()
    ]
    served_by = "worker" if "--workers" in serve_arguments else None
    assert sorted(line["message"].split()[0] for line in access) == ["grpc", "http"], access
    assert {line.get("process") for line in access} == {served_by}, access

    # A gRPC call alone is a trace of its own: the server span at its root, the database's
    # spans under it.
    roots = [
        s for s in receiver.spans if s.span.name == GET_ASSIGNMENT and not s.span.parent_span_id
    ]
    grpc_alone = one(roots, "gRPC GetAssignment without a caller's trace")
    assert grpc_alone.span.kind == Span.SPAN_KIND_SERVER
    database_spans(receiver.trace(grpc_alone.span.trace_id), grpc_alone)

    exported_values = repr([s.span.attributes for s in receiver.spans])
    assert service.admin_token not in exported_values and "Bearer" not in exported_values
    reports = imported_by_process(imported)
    # The parent of forked workers serves nothing and traces nothing: no worker inherits the
    # batch processor's thread (the workers' own report is lost: they end with os._exit).
    assert ("opentelemetry.sdk.trace" in reports["serve"]) is ("--workers" not in serve_arguments)


def test_without_otel_settings_nothing_is_imported_or_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    imported = report_imports(tmp_path, monkeypatch)
    # An endpoint alone would turn tracing on; `none` keeps it off (and the receiver listens).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    service = start(tmp_path)
    try:
        assignment_in_store(service)
        rest_get(service, {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"})
        grpc_get(service)
    finally:
        stop(service)
    assert receiver.requests == 0
    assert imported_by_process(imported) == {"serve": set()}


def test_an_otel_value_that_cannot_be_used_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    refused = subprocess.run(
        [CLI, "serve", "--grpc-port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("customer-segments: OTEL_TRACES_SAMPLER: unknown sampler")
    assert "Traceback" not in refused.stderr


def test_the_gateway_command_traces_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    traced_env(monkeypatch, receiver)
    service = start(tmp_path)
    http_port = free_port()
    gateway_log = tmp_path / "gateway.log"
    gateway = logged_process(
        [
            *(CLI, "gateway", *NO_METRICS, "--grpc-target", service.target),
            *("--http-host", "127.0.0.1", "--http-port", str(http_port)),
        ],
        gateway_log,
    )
    try:
        wait_for_port(http_port, gateway, gateway_log)
        assignment_in_store(service)
        trace_id, caller_span_id, traceparent = caller_trace()
        rest_get(service, traceparent, base=f"http://127.0.0.1:{http_port}")
    finally:
        try:
            gateway.terminate()
            assert gateway.wait(timeout=60) == 0, gateway_log.read_text()
        finally:
            stop(service)  # also when the gateway failed: no process outlives the test
    rest_trace(receiver, trace_id, caller_span_id)
