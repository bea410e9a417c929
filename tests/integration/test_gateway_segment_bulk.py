"""The segment bulk paths, over HTTP -> gRPC and over gRPC, on both databases: every item is
decided by the service on its own (SegmentService Bulk* RPCs), answered 207 in request order,
with the answers the gateway gave when it made one call per item."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import grpc
import pytest
from customersegment.v1 import segment_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from tests.conftest import Stubs
from tests.helpers import bearer, expect_error
from tests.integration.test_gateway_assignments import answer
from tests.integration.test_gateway_segments import GOLDEN, PLATINUM, segments

GENERATED = re.compile(r"[0-9a-f]{24}")
SEGMENT = {"name": {"en": "x"}, "siteCode": "main"}
BAD_ID = "bad\u0001id"


def _generated_ids(body: list[dict[str, Any]], *positions: int) -> list[dict[str, Any]]:
    """The body with the ids the service generated (at these 1-based positions) as "<id>"."""
    for position in positions:
        assert GENERATED.fullmatch(body[position - 1]["id"]), body[position - 1]
        body[position - 1]["id"] = "<id>"
    return body


async def test_bulk_create_decides_each_item(http: aiohttp.ClientSession, tenant: str) -> None:
    validity = {"from": "2025-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}
    items: list[Any] = [
        GOLDEN,
        PLATINUM,
        {"name": {"en": "No site"}},
        7,
        GOLDEN,
        SEGMENT | {"id": BAD_ID},
        SEGMENT | {"id": ""},
        SEGMENT | {"mixins": {"a": 1}},
        SEGMENT | {"id": "v", "validity": validity},
    ]
    async with http.post(f"{segments(tenant)}/bulk", json=items) as response:
        status, body = await answer(response)
    assert status == 207
    assert _generated_ids(body, 7, 8) == [
        {"index": 1, "id": GOLDEN["id"], "code": 201, "status": "Created"},
        {"index": 2, "id": PLATINUM["id"], "code": 201, "status": "Created"},
        {"index": 3, "code": 400, "status": "Bad Request", "message": "siteCode: Field required"},
        {
            "index": 4,
            "code": 400,
            "status": "Bad Request",
            "message": "[4]: Input should be a valid dictionary or instance of SegmentCreation",
        },
        {
            "index": 5,
            "code": 409,
            "status": "Conflict",
            "id": GOLDEN["id"],
            "message": "The resource already exists.",
        },
        {
            "index": 6,
            "code": 400,
            "status": "Bad Request",
            "id": BAD_ID,
            "message": "id: must not contain control characters",
        },
        {"index": 7, "id": "<id>", "code": 201, "status": "Created"},
        {"index": 8, "id": "<id>", "code": 201, "status": "Created"},
        {
            "index": 9,
            "code": 400,
            "status": "Bad Request",
            "id": "v",
            "message": "validity: from must not be after to",
        },
    ]
    async with http.get(segments(tenant), params={"pageSize": "100"}) as response:
        listed = await response.json()
    assert len(listed) == 4  # the failed items left nothing behind


async def test_bulk_upsert_decides_each_item(http: aiohttp.ClientSession, tenant: str) -> None:
    async with http.post(f"{segments(tenant)}/bulk", json=[GOLDEN, PLATINUM]) as response:
        assert response.status == 207
    items: list[Any] = [
        GOLDEN | {"metadata": {"version": 1}},
        PLATINUM | {"metadata": {"version": 2}},
        SEGMENT,
        SEGMENT | {"id": "new"},
        SEGMENT | {"id": "new", "name": {"en": "y"}},
        "x",
        SEGMENT | {"id": BAD_ID},
        SEGMENT | {"id": "w", "metadata": {"version": 3}},
        SEGMENT | {"id": "m", "metadata": {"mixins": {"a": "u"}}},
    ]
    async with http.put(f"{segments(tenant)}/bulk", json=items) as response:
        status, body = await answer(response)
    assert status == 207
    assert body == [
        {"index": 1, "id": GOLDEN["id"], "code": 204, "status": "No Content"},
        {
            "index": 2,
            "code": 409,
            "status": "Conflict",
            "id": PLATINUM["id"],
            "message": "The resource you are attempting to access has changed.",
        },
        {"index": 3, "code": 400, "status": "Bad Request", "message": "id: is required"},
        {"index": 4, "id": "new", "code": 201, "status": "Created"},
        {"index": 5, "id": "new", "code": 204, "status": "No Content"},
        {
            "index": 6,
            "code": 400,
            "status": "Bad Request",
            "message": "[6]: Input should be a valid dictionary or instance of SegmentCreation",
        },
        {
            "index": 7,
            "code": 400,
            "status": "Bad Request",
            "id": BAD_ID,
            "message": "segmentId: must not contain control characters",
        },
        {"index": 8, "id": "w", "code": 201, "status": "Created"},
        {"index": 9, "id": "m", "code": 201, "status": "Created"},
    ]
    async with http.get(f"{segments(tenant)}/new") as response:
        stored = await response.json()
    assert stored["name"] == {"en": "y"} and stored["metadata"]["version"] == 2


async def test_bulk_delete_decides_each_item(http: aiohttp.ClientSession, tenant: str) -> None:
    url = f"{segments(tenant)}/bulk"
    async with http.post(url, json=[GOLDEN, SEGMENT | {"id": "new"}]) as response:
        assert response.status == 207
    async with http.put(f"{segments(tenant)}/new/customers/c1", json={}) as response:
        assert response.status == 201
    async with http.delete(url, json=[GOLDEN["id"], "nosuch", 7, "new", BAD_ID, ""]) as response:
        status, body = await answer(response)
    assert status == 207
    assert body == [
        {"index": 1, "id": GOLDEN["id"], "code": 204, "status": "No Content"},
        {
            "index": 2,
            "code": 404,
            "status": "Not Found",
            "id": "nosuch",
            "message": "The segment with id nosuch has not been found.",
        },
        {"index": 3, "code": 400, "status": "Bad Request", "message": "id: must be a string"},
        {
            "index": 4,
            "code": 400,
            "status": "Bad Request",
            "id": "new",
            "message": "The segment with id new still has customer assignments; delete with "
            "force to remove them too.",
        },
        {
            "index": 5,
            "code": 400,
            "status": "Bad Request",
            "id": BAD_ID,
            "message": "segmentId: must not contain control characters",
        },
        {"index": 6, "code": 400, "status": "Bad Request", "message": "segmentId: is required"},
    ]
    async with http.delete(url, params={"forceDelete": "true"}, json=["new", "new"]) as response:
        status, body = await answer(response)
    assert status == 207
    assert body == [
        {"index": 1, "id": "new", "code": 204, "status": "No Content"},
        {
            "index": 2,
            "code": 404,
            "status": "Not Found",
            "id": "new",
            "message": "The segment with id new has not been found.",
        },
    ]
    async with http.get(f"{segments(tenant)}/new/customers/c1") as response:
        assert response.status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: must hold at least one item"),
        ({}, "body: must be a JSON array of items"),
        (["x"] * 201, "body: holds 201 items; at most 200 are allowed"),
    ],
)
async def test_bulk_bodies_refused_as_a_whole(
    http: aiohttp.ClientSession, tenant: str, method: str, body: Any, message: str
) -> None:
    async with http.request(method, f"{segments(tenant)}/bulk", json=body) as response:
        status, answered = await answer(response)
    assert (status, answered["message"], answered["details"]["field"]) == (400, message, "body")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/bulk", [GOLDEN]),
        ("PUT", "/bulk", [GOLDEN]),
        ("DELETE", "/bulk", [GOLDEN["id"]]),
        ("PUT", "/gold/customers/bulk", [{"customerId": "c1"}]),
        ("DELETE", "/gold/customers/bulk", [{"customerId": "c1"}]),
    ],
)
async def test_if_match_on_a_bulk_path_is_400_and_writes_nothing(
    http: aiohttp.ClientSession, tenant: str, segment_id: str, method: str, path: str, body: Any
) -> None:
    """A bulk path's target has no version; each item carries its own metadata.version."""
    url = segments(tenant) + path
    async with http.request(method, url, json=body, headers={"If-Match": '"1"'}) as response:
        status, answered = await answer(response)
    assert status == 400 and answered["details"]["field"] == "If-Match", answered
    async with http.get(f"{segments(tenant)}/{GOLDEN['id']}") as response:
        assert response.status == 404


async def test_a_token_without_the_write_scope_is_refused_for_the_whole_request(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    headers = {"Authorization": bearer(tenant, "customersegment.segment_read")}
    async with http.post(f"{segments(tenant)}/bulk", json=[GOLDEN], headers=headers) as response:
        status, body = await answer(response)
    assert status == 403 and "segment_manage" in body["message"]


# Over gRPC ---------------------------------------------------------------------------------


def _segment(segment_id: str, **fields: Any) -> pb.Segment:
    return pb.Segment(id=segment_id, name={"en": "N"}, site_code="main", **fields)


async def test_grpc_bulk_create_streams_each_result_and_has_no_200_cap(
    stubs: Stubs, tenant: str
) -> None:
    request = pb.BulkCreateSegmentsRequest(
        tenant=tenant, segments=[_segment(f"s{n}") for n in range(250)] + [_segment("s0")]
    )
    messages = [message async for message in stubs.segments.BulkCreateSegments(request)]
    results = [result for message in messages for result in message.results]
    assert len(messages) == len(results) == 251  # one message per decided item
    assert [r.index for r in results] == list(range(1, 252))
    assert {r.code for r in results[:250]} == {201}
    assert (results[250].code, results[250].status, results[250].segment_id) == (
        409,
        "Conflict",
        "s0",
    )
    listed = await stubs.segments.ListSegments(
        pb.ListSegmentsRequest(tenant=tenant, include_total_count=True)
    )
    assert listed.total_count == 250


async def test_grpc_bulk_item_with_a_timestamp_out_of_range_fails_alone(
    stubs: Stubs, tenant: str
) -> None:
    broken = _segment("broken", validity=pb.Validity(end_time=Timestamp(seconds=2**40)))
    request = pb.BulkUpsertSegmentsRequest(
        tenant=tenant,
        items=[
            pb.BulkUpsertSegmentsItem(segment=broken),
            pb.BulkUpsertSegmentsItem(segment=_segment("fine")),
            pb.BulkUpsertSegmentsItem(segment=_segment("fine"), version=7),
        ],
    )
    results = [r async for m in stubs.segments.BulkUpsertSegments(request) for r in m.results]
    assert [(r.index, r.code, r.segment_id) for r in results] == [
        (1, 400, ""),
        (2, 201, "fine"),
        (3, 409, "fine"),
    ]
    assert results[0].message == "segment.validity.end_time: is not a valid timestamp"


async def test_grpc_bulk_delete_and_its_authorization(stubs: Stubs, tenant: str) -> None:
    create = pb.BulkCreateSegmentsRequest(tenant=tenant, segments=[_segment("a")])
    assert [r.code async for m in stubs.segments.BulkCreateSegments(create) for r in m.results] == [
        201
    ]
    delete = pb.BulkDeleteSegmentsRequest(tenant=tenant, segment_ids=["a", "a"])
    read_only = [("authorization", bearer(tenant, "customersegment.segment_read"))]
    refused = stubs.segments.BulkDeleteSegments(delete, metadata=read_only)
    await expect_error(_drain(refused), grpc.StatusCode.PERMISSION_DENIED, "segment_manage")
    other_tenant = [("authorization", bearer("another"))]
    refused = stubs.segments.BulkDeleteSegments(delete, metadata=other_tenant)
    await expect_error(_drain(refused), grpc.StatusCode.PERMISSION_DENIED, "not valid")
    results = [r async for m in stubs.segments.BulkDeleteSegments(delete) for r in m.results]
    assert [(r.code, r.status) for r in results] == [(204, "No Content"), (404, "Not Found")]


async def _drain(call: Any) -> list[Any]:
    return [message async for message in call]


async def test_a_bulk_items_bad_field_is_its_proto_path_over_grpc_and_its_rest_name_over_http(
    stubs: Stubs, http: aiohttp.ClientSession, tenant: str
) -> None:
    """The service names the field of an item's failure as its single call's BadRequest would;
    the gateway renders it through the one table (REST_FIELD_PATHS), as for a single call."""
    before_year_1 = Timestamp(seconds=-62135596801)
    deep = "[" * 70 + "]" * 70
    items = [
        _segment("m", mixins_json="[1]"),
        _segment("v", validity=pb.Validity(start_time=before_year_1)),
        _segment("d", metadata=pb.SegmentMetadata(mixins_json=f'{{"a":{deep}}}')),
        _segment("ok"),
    ]
    create = pb.BulkCreateSegmentsRequest(tenant=tenant, segments=items)
    created = [r async for m in stubs.segments.BulkCreateSegments(create) for r in m.results]
    upsert = pb.BulkUpsertSegmentsRequest(
        tenant=tenant, items=[pb.BulkUpsertSegmentsItem(segment=s) for s in items]
    )
    upserted = [r async for m in stubs.segments.BulkUpsertSegments(upsert) for r in m.results]
    expected = [
        ("segment.mixins_json", "must be a JSON object", "INVALID_ARGUMENT"),
        ("segment.validity.start_time", "is not a valid timestamp", "INVALID_ARGUMENT"),
        (
            "segment.metadata.mixins_json",
            "must not nest objects and arrays more than 64 levels deep",
            "LIMIT_EXCEEDED",
        ),
        ("", "", ""),
    ]
    for results in (created, upserted):
        assert [(r.field, r.field_description, r.reason) for r in results] == expected
        assert results[0].message == "segment.mixins_json: must be a JSON object"

    rest_items: list[Any] = [
        SEGMENT | {"id": "m2", "mixins": {"k": "\u0000"}},
        SEGMENT | {"id": "v2", "validity": {"from": "0001-01-01T00:00:00+14:00"}},
        SEGMENT | {"id": "w2", "validity": {"from": "2025-01-01T00:00:00Z", "to": "2024-01-01"}},
        SEGMENT | {"id": "d2", "metadata": {"mixins": {"b": "\u0000"}}},
        {"id": "s2", "name": {"en": "x"}},
    ]
    async with http.put(f"{segments(tenant)}/bulk", json=rest_items) as response:
        status, body = await answer(response)
    assert status == 207
    assert [(r["code"], r["message"]) for r in body] == [
        (400, "mixins: must not contain the NUL character (\\u0000)"),
        (400, "validity.from: Value error, is before year 1 or after year 9999 in UTC"),
        (400, "validity: from must not be after to"),
        (400, "metadata.mixins: must not contain the NUL character (\\u0000)"),
        (400, "siteCode: Field required"),
    ]


async def test_a_bulk_items_failure_without_a_field_has_its_reason(
    stubs: Stubs, tenant: str
) -> None:
    create = pb.BulkCreateSegmentsRequest(tenant=tenant, segments=[_segment("t"), _segment("t")])
    created = [r async for m in stubs.segments.BulkCreateSegments(create) for r in m.results]
    delete = pb.BulkDeleteSegmentsRequest(tenant=tenant, segment_ids=["t", "t", ""])
    deleted = [r async for m in stubs.segments.BulkDeleteSegments(delete) for r in m.results]
    assert [(r.code, r.reason, r.field) for r in created + deleted] == [
        (201, "", ""),
        (409, "SEGMENT_ALREADY_EXISTS", ""),
        (204, "", ""),
        (404, "SEGMENT_NOT_FOUND", ""),
        (400, "INVALID_ARGUMENT", "segment_id"),
    ]
