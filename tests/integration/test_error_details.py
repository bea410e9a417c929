"""Every error carries google.rpc.Status details that say what happened: ErrorInfo with the
reason of domain/errors.py, PreconditionFailure on a version conflict, RetryInfo where a retry
helps; and the REST gateway passes them on (field names, Retry-After) without gRPC's words."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import grpc
import pytest
import pytest_asyncio
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from customer_segments.auth.tokens import TokenVerifier
from customer_segments.domain.errors import ERROR_DOMAIN, Reason
from customer_segments.domain.principal import Scope
from customer_segments.gateway.app import start_gateway
from customer_segments.grpc.server import ServerLimits, start_grpc_server
from customer_segments.store.database import Database
from customer_segments.store.store import Store
from tests.conftest import Stubs
from tests.helpers import (
    TEST_SECRET,
    AssignmentFields,
    SegmentFields,
    bearer,
    error_info,
    field_violations,
    status_details,
)

Call = Callable[[Stubs, Stubs, str, str], Awaitable[Any]]


def _auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", token)]


def _get(customer_id: str, segment_id: str | None = None) -> Call:
    def call(stubs: Stubs, _bare: Stubs, tenant: str, segment: str) -> Awaitable[Any]:
        return stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(
                tenant=tenant, segment_id=segment_id or segment, customer_id=customer_id
            )
        )

    return call


def _list(**fields: Any) -> Call:
    def call(stubs: Stubs, _bare: Stubs, tenant: str, segment: str) -> Awaitable[Any]:
        request = pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment, **fields)
        return stubs.assignments.ListAssignments(request)

    return call


def _upsert_with(metadata: Callable[[str], list[tuple[str, str]]]) -> Call:
    def call(_stubs: Stubs, bare: Stubs, tenant: str, segment: str) -> Awaitable[Any]:
        request = pb.UpsertAssignmentRequest(tenant=tenant, segment_id=segment, customer_id="c1")
        return bare.assignments.UpsertAssignment(request, metadata=metadata(tenant))

    return call


def _create_again(stubs: Stubs, _bare: Stubs, tenant: str, segment: str) -> Awaitable[Any]:
    again = segment_pb2.Segment(id=segment, name={"en": "Again"}, site_code="main")
    return stubs.segments.CreateSegment(
        segment_pb2.CreateSegmentRequest(tenant=tenant, segment=again)
    )


async def _delete_with_assignments(stubs: Stubs, _bare: Stubs, tenant: str, segment: str) -> None:
    key: SegmentFields = {"tenant": tenant, "segment_id": segment}
    await stubs.assignments.UpsertAssignment(pb.UpsertAssignmentRequest(**key, customer_id="c1"))
    await stubs.segments.DeleteSegment(segment_pb2.DeleteSegmentRequest(**key))


def _customer_reads_a_segment(_stubs: Stubs, bare: Stubs, tenant: str, segment: str) -> Any:
    customer = bearer(tenant, Scope.READ_OWN.value, sub="nobody")
    request = segment_pb2.GetSegmentRequest(tenant=tenant, segment_id=segment)
    return bare.segments.GetSegment(request, metadata=_auth(customer))


class Case(NamedTuple):
    call: Call
    code: grpc.StatusCode
    reason: Reason
    metadata: dict[str, str] | None = None
    field: str | None = None


CASES: dict[str, Case] = {
    "no segment": Case(
        _get("c1", "nosuch"),
        grpc.StatusCode.NOT_FOUND,
        Reason.SEGMENT_NOT_FOUND,
        {"resourceId": "nosuch", "resourceType": "segment"},
    ),
    "no assignment": Case(
        _get("c404"),
        grpc.StatusCode.NOT_FOUND,
        Reason.ASSIGNMENT_NOT_FOUND,
        {"resourceId": "c404", "resourceType": "customer assignment"},
    ),
    "bad field": Case(
        _get(""), grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT, field="customer_id"
    ),
    "bad q": Case(
        _list(q="customerId:"), grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_QUERY, field="q"
    ),
    "bad cursor": Case(
        _list(page_token="garbage"),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_PAGE_TOKEN,
        field="page_token",
    ),
    "page too large": Case(
        _list(page_size=1001),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.LIMIT_EXCEEDED,
        field="page_size",
    ),
    "id too long": Case(
        _get("c" * 256),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.LIMIT_EXCEEDED,
        field="customer_id",
    ),
    "segment exists": Case(
        _create_again,
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.SEGMENT_ALREADY_EXISTS,
        {"resourceId": "gold"},
    ),
    "delete without force": Case(
        _delete_with_assignments,
        grpc.StatusCode.FAILED_PRECONDITION,
        Reason.SEGMENT_HAS_ASSIGNMENTS,
        {"resourceId": "gold"},
    ),
    "no token": Case(
        _upsert_with(lambda _tenant: []), grpc.StatusCode.UNAUTHENTICATED, Reason.TOKEN_MISSING
    ),
    "bad token": Case(
        _upsert_with(lambda _tenant: _auth("Bearer not-a-jwt")),
        grpc.StatusCode.UNAUTHENTICATED,
        Reason.TOKEN_INVALID,
    ),
    "read-only token writes": Case(
        _upsert_with(lambda tenant: _auth(bearer(tenant, Scope.READ.value))),
        grpc.StatusCode.PERMISSION_DENIED,
        Reason.SCOPE_MISSING,
    ),
    "another tenant's token": Case(
        _upsert_with(lambda _tenant: _auth(bearer("othertenant"))),
        grpc.StatusCode.PERMISSION_DENIED,
        Reason.TENANT_MISMATCH,
    ),
    "customer beyond its view": Case(
        _customer_reads_a_segment, grpc.StatusCode.PERMISSION_DENIED, Reason.CUSTOMER_VIEW_ONLY
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_error_says_its_reason(
    stubs: Stubs, bare_stubs: Stubs, tenant: str, segment_id: str, case: Case
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await case.call(stubs, bare_stubs, tenant, segment_id)
    error = raised.value
    assert error.code() == case.code, error.details()
    info = error_info(error)
    assert (info.domain, info.reason) == (ERROR_DOMAIN, case.reason)
    assert dict(info.metadata) == (case.metadata or {})
    assert field_violations(error) == ([case.field] if case.field else [])


# Reasons the table above leaves to the tests below, of outages and of pools (they need a
# database that fails), and to bugs.
ELSEWHERE = {
    Reason.VERSION_MISMATCH,
    Reason.DATABASE_UNAVAILABLE,
    Reason.DATABASE_BUSY,
    Reason.INTERNAL,
    Reason.EVENTS_PRUNED,  # test_watch_events.py
    # test_webhooks.py, by their REST statuses
    Reason.WEBHOOK_NOT_FOUND,
    Reason.DELIVERY_NOT_FOUND,
    Reason.DELIVERY_NOT_FAILED,
}


def test_every_reason_is_tested_and_documented() -> None:
    assert {case.reason for case in CASES.values()} | ELSEWHERE == set(Reason)
    documented = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    missing = [reason.value for reason in Reason if f"`{reason.value}`" not in documented]
    assert not missing, f"docs/errors.md does not describe {missing}"


async def _version_conflict(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.ABORTED, raised.value.details()
    assert error_info(raised.value).reason == Reason.VERSION_MISMATCH
    return raised.value


def _precondition(error: grpc.aio.AioRpcError) -> tuple[str, str, str]:
    (failure,) = status_details(error, error_details_pb2.PreconditionFailure)
    (violation,) = failure.violations
    return violation.type, violation.subject, violation.description


async def test_a_version_conflict_says_what_was_expected_and_found(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    key: AssignmentFields = {"tenant": tenant, "segment_id": segment_id, "customer_id": "c1"}
    await stubs.assignments.UpsertAssignment(pb.UpsertAssignmentRequest(**key))
    stale = await _version_conflict(
        stubs.assignments.UpsertAssignment(pb.UpsertAssignmentRequest(**key, version=5))
    )
    assert _precondition(stale) == (
        "VERSION",
        "customer assignment c1",
        "expected version 5, found version 1",
    )
    info = error_info(stale)
    assert (info.metadata["expectedVersion"], info.metadata["actualVersion"]) == ("5", "1")
    gone = await _version_conflict(
        stubs.assignments.RemoveAssignment(
            pb.RemoveAssignmentRequest(
                tenant=tenant, segment_id=segment_id, customer_id="c2", must_exist=True
            )
        )
    )
    assert _precondition(gone)[2] == "expected to exist, found it does not exist"
    assert "actualVersion" not in error_info(gone).metadata
    segment = segment_pb2.Segment(name={"en": "Gold"}, site_code="main")
    stale_segment = await _version_conflict(
        stubs.segments.UpsertSegment(
            segment_pb2.UpsertSegmentRequest(
                tenant=tenant, segment_id=segment_id, segment=segment, version=3
            )
        )
    )
    assert _precondition(stale_segment) == (
        "VERSION",
        f"segment {segment_id}",
        "expected version 3, found version 1",
    )
    assert status_details(stale_segment, error_details_pb2.RetryInfo) == []


async def test_rest_errors_name_the_rest_fields_of_the_service_violations(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    """Fields the service finds wrong (not the gateway), named as the REST body names them."""
    segments = f"/customer-segment/{tenant}/segments"
    customers = f"{segments}/{segment_id}/customers"
    later, earlier = "2030-01-01T00:00:00.000Z", "2029-01-01T00:00:00.000Z"
    cases = [
        ("POST", segments, {**NEW_SEGMENT, "validity": {"from": later, "to": earlier}}, "validity"),
        ("GET", f"{customers}?pageSize=1001", None, "pageSize"),
        ("GET", f"{customers}?q=customerId:", None, "q"),
        ("PUT", f"{customers}/c1", {"mixins": {"a": "\u0000"}}, "mixins"),
    ]
    for method, path, body, field in cases:
        async with http.request(method, path, json=body) as response:
            answer = await response.json()
        assert response.status == 400, (path, answer)
        assert answer["details"]["field"] == field, (path, answer)
        assert answer["message"].startswith(f"{field}: "), answer


NEW_SEGMENT = {"name": {"en": "x"}, "siteCode": "main"}
# The gRPC server of the concurrency test refuses every call beyond this one.
ONE_CALL = ServerLimits(max_concurrent_rpcs=1)


@pytest_asyncio.fixture(loop_scope="session")
async def one_call_at_a_time(tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """A gRPC server that handles one call at a time (transport only: one database does),
    and a gateway in front of it: their ports."""
    store = Store(Database(f"sqlite:///{tmp_path / 'unused.db'}"))
    verifier = TokenVerifier(secret=TEST_SECRET.encode())
    server = await start_grpc_server(store, "127.0.0.1", 0, verifier=verifier, limits=ONE_CALL)
    gateway = await start_gateway(f"127.0.0.1:{server.port}", "127.0.0.1", 0)
    try:
        yield server.port, gateway.port
    finally:
        await gateway.stop()
        await server.stop(0)
        await store.close()


async def test_a_server_over_its_concurrent_calls_is_503_with_retry_after(
    one_call_at_a_time: tuple[int, int],
) -> None:
    """gRPC's own RESOURCE_EXHAUSTED (max_concurrent_rpcs): the service is overloaded, not the
    caller at fault; never a 500, never gRPC's words."""
    grpc_port, http_port = one_call_at_a_time
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        # A health watch holds the one slot for as long as it is open; its first answer
        # proves that the server is handling it.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{http_port}") as http:
                path = "/customer-segment/acme/segments/gold/customers/c1"
                async with http.get(path, headers={"Authorization": bearer("acme")}) as response:
                    body = await response.json()
                    assert response.status == 503, body
                    assert response.headers["Retry-After"] == "1"
        finally:
            watch.cancel()
    assert body == {
        "code": 503,
        "status": "Service Unavailable",
        "message": "The service is unavailable; retry later.",
    }
