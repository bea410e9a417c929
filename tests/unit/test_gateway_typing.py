"""The gateway's gRPC calls are typed by the RPC they make: a misnamed field of a request or an
answer, or another RPC's request, fails mypy, before any test runs the line."""

from __future__ import annotations

import gc
import re
import sys
from pathlib import Path

import mypy.api

ROOT = Path(__file__).resolve().parents[2]

# Each line that ends in `# error: TEXT` must get an error containing TEXT; no other line may.
SNIPPET = """\
from aiohttp import web
from customersegment.v1 import assignment_pb2, segment_pb2

from customer_segments.gateway.grpc_client import GrpcClient


async def use(client: GrpcClient, request: web.Request) -> None:
    upsert = assignment_pb2.UpsertAssignmentRequest(tenant="acme")
    answer = await client.call(request, client.assignments.UpsertAssignment, upsert)
    print(answer.created)
    print(answer.creatd)  # error: "UpsertAssignmentResponse" has no attribute "creatd"
    get = segment_pb2.GetSegmentRequest(tenant="acme")
    await client.call(request, client.assignments.UpsertAssignment, get)  # error: "Request"
    bulk = assignment_pb2.BulkRemoveAssignmentsRequest(tenant="acme")
    async for batch in client.stream(request, client.assignments.BulkRemoveAssignments, bulk):
        print(batch.results[0].code)
        print(batch.reslts)  # error: "BulkRemoveAssignmentsResponse" has no attribute "reslts"
"""

_ERROR = re.compile(r"^[^:]+:(\d+): error: (.*)$")


def _mypy(path: Path) -> str:
    # In this process, so that it reads the cache that `make test`'s mypy step has just
    # written (about a second, not the twenty of a cold run); mypy tunes the garbage collector
    # and the recursion limit for itself, which the tests after this one must not inherit.
    threshold, recursion_limit = gc.get_threshold(), sys.getrecursionlimit()
    try:
        report, errors, _ = mypy.api.run(
            [
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(ROOT / ".mypy_cache"),
                str(path),
            ]
        )
    finally:
        gc.set_threshold(*threshold)
        sys.setrecursionlimit(recursion_limit)
    assert not errors, errors
    return report


def test_a_misnamed_field_or_a_wrong_request_fails_mypy(tmp_path: Path) -> None:
    snippet = tmp_path / "gateway_use.py"
    snippet.write_text(SNIPPET)
    expected = {
        number: line.partition("# error: ")[2]
        for number, line in enumerate(SNIPPET.splitlines(), start=1)
        if "# error: " in line
    }

    report = _mypy(snippet)

    found: dict[int, list[str]] = {}
    for line in report.splitlines():
        match = _ERROR.match(line)
        if match:
            found.setdefault(int(match[1]), []).append(match[2])
    assert sorted(found) == sorted(expected), report
    for number, text in expected.items():
        assert any(text in message for message in found[number]), report
