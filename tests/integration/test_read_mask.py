"""Field selection: REST `fields` is passed on as the request's FieldMask (read_mask) and the
server projects, over HTTP and gRPC on both databases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from tests.conftest import Stubs
from tests.helpers import expect_error, field_violations
from tests.integration.test_gateway_assignments import answer, base
from tests.integration.test_gateway_segments import segments

MIXINS = {"tier": 20}


@pytest_asyncio.fixture(loop_scope="session")
async def assigned(http: aiohttp.ClientSession, tenant: str, segment_id: str) -> str:
    """c1 as B2C (with mixins) and for le1, in the `gold` segment; its assignments URL."""
    url = base(tenant, segment_id)
    async with http.put(f"{url}/c1", json={"mixins": MIXINS}) as response:
        assert response.status == 201
    async with http.put(f"{url}/c1/le1", json={}) as response:
        assert response.status == 201
    return url


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("customer.id,metadata.version", {"customer": {"id": "c1"}, "metadata": {"version": 1}}),
        ("mixins", {"mixins": MIXINS}),
        ("assignmentType,,", {"assignmentType": "MANUAL"}),
        ("legalEntity.id", {}),  # B2C: none
    ],
)
async def test_get_assignment_with_fields(
    http: aiohttp.ClientSession, assigned: str, fields: str, expected: dict[str, object]
) -> None:
    async with http.get(f"{assigned}/c1", params={"fields": fields}) as response:
        assert await answer(response) == (200, expected)
        # The ETag is the version: sent only when the answer holds it.
        assert response.headers.get("ETag") == ('"1"' if "metadata" in expected else None)


async def test_list_and_search_assignments_with_fields(
    http: aiohttp.ClientSession, assigned: str
) -> None:
    params = {"fields": "legalEntity.id,customer.id", "sort": "legalEntityId"}
    async with http.get(assigned, params=params) as response:
        listed = await answer(response)
    async with http.post(f"{assigned}/search", params=params, json={"q": ""}) as response:
        searched = await answer(response)
    expected = [
        {"customer": {"id": "c1"}},
        {"customer": {"id": "c1"}, "legalEntity": {"id": "le1"}},
    ]
    assert listed == searched == (200, expected)


async def test_segments_with_fields(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    params = {"fields": "id,siteCode,metadata.createdAt"}
    async with http.get(f"{segments(tenant)}/{segment_id}", params=params) as response:
        status, one = await answer(response)
        assert "ETag" not in response.headers
    async with http.get(segments(tenant), params=params) as response:
        listed = await answer(response)
    assert status == 200 and set(one) == {"id", "siteCode", "metadata"}
    assert set(one["metadata"]) == {"createdAt"}
    assert listed == (200, [one])


@pytest.mark.parametrize("fields", ["nope", "mixins.tier", "customer.firstname", "name.en"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/gold/customers/c1"),
        ("GET", "/gold/customers"),
        ("POST", "/gold/customers/search"),
        ("GET", "/gold"),
        ("GET", ""),
        ("POST", "/search"),
    ],
)
async def test_an_unknown_field_is_400_naming_fields(
    http: aiohttp.ClientSession, assigned: str, tenant: str, method: str, path: str, fields: str
) -> None:
    """Each table has only its resource's REST paths; mixins are selected as a whole."""
    if path.startswith("/gold/customers") and fields == "name.en":
        fields = "customer.firstname.x"
    url = segments(tenant) + path
    async with http.request(method, url, params={"fields": fields}, json={}) as response:
        status, body = await answer(response)
    assert status == 400 and body["details"]["field"] == "fields", body
    assert repr(fields) in body["message"], body


async def test_grpc_read_masks(stubs: Stubs, tenant: str, assigned: str) -> None:
    mask = FieldMask(paths=["customer.id", "mixins_json"])
    one = await stubs.assignments.GetAssignment(
        pb.GetAssignmentRequest(tenant=tenant, segment_id="gold", customer_id="c1", read_mask=mask)
    )
    assert one.assignment == pb.Assignment(customer=pb.Customer(id="c1"), mixins_json='{"tier":20}')
    segment_mask = FieldMask(paths=["id", "metadata.version"])
    segment = await stubs.segments.GetSegment(
        segment_pb2.GetSegmentRequest(tenant=tenant, segment_id="gold", read_mask=segment_mask)
    )
    expected = segment_pb2.Segment(id="gold", metadata=segment_pb2.SegmentMetadata(version=1))
    assert segment.segment == expected
    listed = await stubs.segments.ListSegments(
        segment_pb2.ListSegmentsRequest(tenant=tenant, read_mask=segment_mask)
    )
    assert list(listed.segments) == [expected]


@pytest.mark.parametrize("rpc", ["GetAssignment", "GetSegment", "ListSegments"])
async def test_grpc_unknown_read_mask_path_is_invalid_argument(
    stubs: Stubs, tenant: str, segment_id: str, rpc: str
) -> None:
    mask = FieldMask(paths=["customer.nosuch" if rpc == "GetAssignment" else "nosuch"])
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "GetAssignment": lambda: stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(
                tenant=tenant, segment_id=segment_id, customer_id="c1", read_mask=mask
            )
        ),
        "GetSegment": lambda: stubs.segments.GetSegment(
            segment_pb2.GetSegmentRequest(tenant=tenant, segment_id=segment_id, read_mask=mask)
        ),
        "ListSegments": lambda: stubs.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(tenant=tenant, read_mask=mask)
        ),
    }
    error = await expect_error(calls[rpc](), grpc.StatusCode.INVALID_ARGUMENT, "nosuch")
    assert field_violations(error) == ["read_mask"]
