"""Request ids and access lines of a real `serve`: one line per gRPC call and per REST request,
JSON lines that parse, the request id echoed in the gRPC response metadata, and none of it
with --no-access-log."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from customersegment.v1 import segment_pb2, segment_pb2_grpc

from tests.e2e.test_service_process import Service, start

MADE_ID = re.compile(r"[0-9a-f]{32}")


def _list_segments(service: Service, *metadata: tuple[str, str]) -> dict[str, str]:
    """The trailing metadata of a ListSegments call of tenant acme."""
    with grpc.insecure_channel(service.target) as channel:
        _, call = segment_pb2_grpc.SegmentServiceStub(channel).ListSegments.with_call(
            segment_pb2.ListSegmentsRequest(tenant="acme"),
            metadata=(*service.metadata, *metadata),
            timeout=30,
        )
    return {str(key): str(value) for key, value in call.trailing_metadata()}


def _rest_get(service: Service, request_id: str) -> str:
    """The X-Request-Id a REST list of acme's segments is answered with."""
    request = urllib.request.Request(
        f"{service.http}/customer-segment/acme/segments",
        headers={"Authorization": f"Bearer {service.admin_token}", "X-Request-Id": request_id},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return str(response.headers["X-Request-Id"])


def _stopped(service: Service) -> str:
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0
    return service.output()


def test_json_access_lines_of_grpc_and_rest_carry_the_request_id(tmp_path: Path) -> None:
    service = start(tmp_path, "--log-format", "json", "--workers", "2")
    try:
        assert _list_segments(service, ("x-request-id", "given-1"))["x-request-id"] == "given-1"
        made = _list_segments(service)["x-request-id"]
        assert MADE_ID.fullmatch(made), made
        assert _rest_get(service, "rest-2") == "rest-2"
    finally:
        output = _stopped(service)
    lines: list[dict[str, Any]] = [json.loads(line) for line in output.splitlines()]
    for line in lines:
        assert {"timestamp", "level", "logger", "message", "request_id", "trace_id"} <= set(line)
    # The command itself (the workers' parent, which migrates) logs without a process tag.
    parent = [line for line in lines if line["pid"] == service.process.pid]
    assert parent and not any("process" in line for line in parent)
    access = [line for line in lines if line["logger"] == "customer_segments.access"]
    by_id = {(line["request_id"], "http_route" in line): line for line in access}
    list_method = "/customersegment.v1.SegmentService/ListSegments"
    given = by_id[("given-1", False)]
    assert (given["grpc_method"], given["grpc_code"], given["tenant"]) == (
        list_method,
        "OK",
        "acme",
    )
    assert given["peer"].startswith("ipv4:127.0.0.1:") and given["duration_ms"] >= 0
    assert given["process"] == "worker" and given["pid"] != service.process.pid
    assert by_id[(made, False)]["grpc_code"] == "OK"
    rest = by_id[("rest-2", True)]
    assert (rest["http_method"], rest["http_route"], rest["http_status"], rest["tenant"]) == (
        "GET",
        "/customer-segment/{tenant}/segments",
        200,
        "acme",
    )
    # The worker that took the REST request serves it: its gateway calls the worker's gRPC
    # methods in process, with the REST request's id, and that call has its line too.
    called = by_id[("rest-2", False)]
    assert rest["process"] == called["process"] == "worker" and rest["pid"] == called["pid"]
    assert (called["grpc_method"], called["peer"]) == (list_method, "in-process")


def test_no_access_lines_with_access_log_false(tmp_path: Path) -> None:
    service = start(tmp_path, "--no-access-log", "--log-format", "text")
    try:
        # Request ids are given and echoed all the same.
        assert MADE_ID.fullmatch(_list_segments(service)["x-request-id"])
        assert _rest_get(service, "rest-3") == "rest-3"
    finally:
        output = _stopped(service)
    assert "gRPC listening on" in output and "INFO customer_segments.grpc.server: " in output
    assert "customer_segments.access" not in output, output
