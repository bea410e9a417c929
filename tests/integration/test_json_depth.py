"""Mixins nested deeper than MAX_JSON_DEPTH are refused on every write path, naming the field;
a stored document too deep to read does not break the pages it is on."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import aiohttp
import grpc
import pytest
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2
from sqlalchemy import text

from customer_segments.domain.validation import MAX_JSON_DEPTH, nested_deeper_than
from customer_segments.store.store import Store
from tests.conftest import Stubs
from tests.helpers import admin_metadata, expect_error, field_violations
from tests.integration.test_bulk import item, results_of
from tests.integration.test_gateway_assignments import answer, base
from tests.integration.test_segments import patch

# About 975 levels passed the bulk path on PostgreSQL and then broke every read of the row.
TOO_DEEP = [MAX_JSON_DEPTH + 1, 975, 5_000]


def nested_text(depth: int) -> str:
    outer = (depth + 1) // 2
    inner = depth - outer
    return '{"a":' * outer + "[" * inner + "1" + "]" * inner + "}" * outer


def test_nested_text_has_the_depth_it_says() -> None:
    value = json.loads(nested_text(10))
    assert not nested_deeper_than(value, 10) and nested_deeper_than(value, 9)


async def test_the_deepest_mixins_allowed_are_written_and_read_back(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    deepest = nested_text(MAX_JSON_DEPTH)
    await stubs.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(
            tenant=tenant,
            segment_id=segment_id,
            customer_id="c1",
            mixins_json=deepest,
            metadata_mixins_json=deepest,
        )
    )
    got = (
        await stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="c1")
        )
    ).assignment
    assert json.loads(got.mixins_json) == json.loads(deepest)
    assert json.loads(got.metadata.mixins_json) == json.loads(deepest)


@pytest.mark.parametrize("depth", TOO_DEEP)
@pytest.mark.parametrize("field", ["mixins_json", "metadata_mixins_json"])
async def test_upsert_refuses_deeper_mixins(
    stubs: Stubs, tenant: str, segment_id: str, depth: int, field: str
) -> None:
    request = pb.UpsertAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="c1")
    setattr(request, field, nested_text(depth))
    error = await expect_error(
        stubs.assignments.UpsertAssignment(request),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field}: must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep",
    )
    assert field_violations(error) == [field]


def _bulk_items() -> list[pb.BulkUpsertItem]:
    return [
        item("ok1"),
        item("deep1", mixins_json=nested_text(MAX_JSON_DEPTH + 1)),
        item("deep2", mixins_json=nested_text(975)),
        item("deep3", metadata_mixins_json=nested_text(975)),
        item("ok2", mixins_json=nested_text(MAX_JSON_DEPTH)),
    ]


def _assert_deep_items_refused(results: list[Any]) -> None:
    assert [(r.index, r.code) for r in results] == [
        (1, 201),
        (2, 400),
        (3, 400),
        (4, 400),
        (5, 201),
    ]
    assert "mixins_json: must not nest" in results[1].message
    assert "mixins_json: must not nest" in results[2].message
    assert "metadata_mixins_json: must not nest" in results[3].message


async def _customers(stubs: Stubs, tenant: str, segment_id: str) -> list[str]:
    page = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id)
    )
    return sorted(a.customer.id for a in page.assignments)


async def test_bulk_refuses_deeper_mixins_item_by_item(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    request = pb.BulkUpsertAssignmentsRequest(
        tenant=tenant, segment_id=segment_id, items=_bulk_items()
    )
    _assert_deep_items_refused(await results_of(stubs.assignments.BulkUpsertAssignments(request)))
    assert await _customers(stubs, tenant, segment_id) == ["ok1", "ok2"]


async def test_stream_refuses_deeper_mixins_item_by_item(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    async def messages() -> Any:
        yield pb.StreamUpsertAssignmentsRequest(
            tenant=tenant, segment_id=segment_id, items=_bulk_items()[:2]
        )
        yield pb.StreamUpsertAssignmentsRequest(items=_bulk_items()[2:])

    call = stubs.assignments.StreamUpsertAssignments(messages(), metadata=admin_metadata(tenant))
    _assert_deep_items_refused(await results_of(call))
    assert await _customers(stubs, tenant, segment_id) == ["ok1", "ok2"]


def _segment(**fields: Any) -> segment_pb2.Segment:
    return segment_pb2.Segment(name={"en": "S"}, site_code="main", **fields)


@pytest.mark.parametrize("depth", TOO_DEEP)
async def test_segment_writes_refuse_deeper_mixins(stubs: Stubs, tenant: str, depth: int) -> None:
    deep = nested_text(depth)
    segments = stubs.segments
    calls: list[tuple[Awaitable[object], str]] = [
        (
            segments.CreateSegment(
                segment_pb2.CreateSegmentRequest(
                    tenant=tenant, segment=_segment(id="s1", mixins_json=deep)
                )
            ),
            "segment.mixins_json",
        ),
        (
            segments.UpsertSegment(
                segment_pb2.UpsertSegmentRequest(
                    tenant=tenant,
                    segment_id="s1",
                    segment=_segment(metadata=segment_pb2.SegmentMetadata(mixins_json=deep)),
                )
            ),
            "segment.metadata.mixins_json",
        ),
    ]
    for call, field in calls:
        error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "must not nest")
        assert field_violations(error) == [field]
    await expect_error(
        segments.GetSegment(segment_pb2.GetSegmentRequest(tenant=tenant, segment_id="s1")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_patch_refuses_deeper_mixins(stubs: Stubs, tenant: str) -> None:
    await stubs.segments.CreateSegment(
        segment_pb2.CreateSegmentRequest(tenant=tenant, segment=_segment(id="s1"))
    )
    deepest_value = nested_text(MAX_JSON_DEPTH - 1)  # under /mixins/x: the deepest allowed
    await stubs.segments.PatchSegment(patch(tenant, "s1", ("add", "/mixins/x", deepest_value)))
    # Into the innermost array of deepest_value (the 64th level): a value there is the 65th.
    innermost = "/mixins/x" + "/a" * ((MAX_JSON_DEPTH) // 2) + "/0" * (MAX_JSON_DEPTH // 2 - 2)
    for operation, field in [
        (("add", "/mixins/x", nested_text(MAX_JSON_DEPTH)), "mixins"),
        (("add", "/metadata/mixins/x", nested_text(MAX_JSON_DEPTH)), "metadata.mixins"),
        (("add", "/mixins/x", nested_text(975)), "operations[1].value_json"),
        (("add", "/mixins/x", nested_text(5_000)), "operations[1].value_json"),
        (("add", f"{innermost}/-", "[]"), "mixins"),
        (("replace", f"{innermost}/0", "{}"), "mixins"),
    ]:
        error = await expect_error(
            stubs.segments.PatchSegment(patch(tenant, "s1", operation)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "levels deep",
        )
        assert field_violations(error) == [field], operation[1][:40]
    got = (
        await stubs.segments.GetSegment(
            segment_pb2.GetSegmentRequest(tenant=tenant, segment_id="s1")
        )
    ).segment
    assert json.loads(got.mixins_json) == {"x": json.loads(deepest_value)}
    # A long path does not build the levels it names (RFC 6902: a missing parent is an error).
    for long_path in ("/mixins" + "/a" * (MAX_JSON_DEPTH + 1), "/mixins" + "/a" * 5_000):
        error = await expect_error(
            stubs.segments.PatchSegment(patch(tenant, "s1", ("add", long_path, "1"))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "does not exist",
        )
        assert field_violations(error) == ["operations[1].path"]


# REST: the same limit, answered 400 naming the field of the REST body. A body hundreds of
# levels deep is past what the gateway's JSON parser takes (it recurses): then it names `body`.
REST_DEPTHS = [MAX_JSON_DEPTH + 1, 500, 975, 5_000]
HEADERS = {"Content-Type": "application/json"}


def _named(field: str, depth: int) -> tuple[str, ...]:
    return (field,) if depth <= 500 else (field, "body")


def _json_body(prefix: str, depth: int, suffix: str) -> bytes:
    return (prefix + nested_text(depth) + suffix).encode()


async def _send(http: aiohttp.ClientSession, method: str, url: str, body: bytes) -> tuple[int, Any]:
    async with http.request(method, url, data=body, headers=HEADERS) as response:
        return await answer(response)


def _assert_400(answered: tuple[int, Any], fields: tuple[str, ...]) -> None:
    status, body = answered
    assert status == 400, body
    assert body["details"]["field"] in fields, body
    assert "levels deep" in body["message"] and "Traceback" not in json.dumps(body)


@pytest.mark.parametrize("depth", REST_DEPTHS)
async def test_rest_assignment_writes_refuse_deeper_mixins(
    http: aiohttp.ClientSession, tenant: str, segment_id: str, depth: int
) -> None:
    url = base(tenant, segment_id)
    _assert_400(
        await _send(http, "PUT", f"{url}/c1", _json_body('{"mixins":', depth, "}")),
        _named("mixins", depth),
    )
    _assert_400(
        await _send(http, "PUT", f"{url}/c1", _json_body('{"metadata":{"mixins":', depth, "}}")),
        _named("metadata.mixins", depth),
    )
    bulk = _json_body('[{"customerId":"ok"},{"customerId":"deep","mixins":', depth, "}]")
    status, answered = await _send(http, "PUT", f"{url}/bulk", bulk)
    if depth <= 500:
        assert status == 207, answered
        assert [(r["index"], r["code"]) for r in answered] == [(1, 201), (2, 400)]
        assert answered[1]["message"].startswith("mixins: must not nest")
    else:
        assert status in (207, 400), answered
    async with http.get(url) as response:
        status, answered = await answer(response)
    assert status == 200
    assert [a["customer"]["id"] for a in answered] in (["ok"], [] if depth > 500 else ["ok"])


@pytest.mark.parametrize("depth", REST_DEPTHS)
async def test_rest_segment_writes_refuse_deeper_mixins(
    http: aiohttp.ClientSession, tenant: str, depth: int
) -> None:
    url = f"/customer-segment/{tenant}/segments"
    document = '{"name":{"en":"S"},"siteCode":"main","mixins":'
    creation = '{"id":"s1",' + document[1:]
    _assert_400(
        await _send(http, "POST", url, _json_body(creation, depth, "}")), _named("mixins", depth)
    )
    _assert_400(
        await _send(http, "PUT", f"{url}/s1", _json_body(document, depth, "}")),
        _named("mixins", depth),
    )
    async with http.post(
        url, json={"id": "s1", "name": {"en": "S"}, "siteCode": "main"}
    ) as response:
        assert response.status == 201
    patch_body = _json_body('[{"op":"add","path":"/mixins/x","value":', depth, "}]")
    _assert_400(await _send(http, "PATCH", f"{url}/s1", patch_body), _named("[1].value", depth))
    long_path = "/mixins" + "/a" * (MAX_JSON_DEPTH + 1)
    status, body = await _send(
        http,
        "PATCH",
        f"{url}/s1",
        json.dumps([{"op": "add", "path": long_path, "value": 1}]).encode(),
    )
    assert status == 400 and body["details"]["field"] == "[1].path", body
    assert "does not exist" in body["message"]


# Rows written before the limit existed (here straight into the table) may be deeper.
STORED_DEPTHS = [500, 900, 975, 3_000]


async def _store_deep_rows(store: Store, tenant: str, segment_id: str, depth: int) -> None:
    deep = nested_text(depth)
    cast = "CAST(:deep AS jsonb)" if store.database.dialect == "postgresql" else ":deep"
    async with store.write() as connection:
        await connection.execute(
            text(
                f"UPDATE segments SET mixins = {cast}, metadata_mixins = {cast}"
                " WHERE tenant = :tenant AND id = :id"
            ),
            {"deep": deep, "tenant": tenant, "id": segment_id},
        )
        await connection.execute(
            text(
                f"UPDATE customer_assignments SET mixins = {cast}, metadata_mixins = {cast}"
                " WHERE tenant = :tenant AND segment_id = :id AND customer_id = 'deep'"
            ),
            {"deep": deep, "tenant": tenant, "id": segment_id},
        )


@pytest.mark.parametrize("depth", STORED_DEPTHS)
async def test_a_stored_row_deeper_than_the_limit_does_not_break_reads(
    stubs: Stubs,
    store: Store,
    http: aiohttp.ClientSession,
    tenant: str,
    segment_id: str,
    depth: int,
) -> None:
    for customer_id in ("a", "deep", "z"):
        await stubs.assignments.UpsertAssignment(
            pb.UpsertAssignmentRequest(
                tenant=tenant, segment_id=segment_id, customer_id=customer_id, mixins_json='{"n":1}'
            )
        )
    await _store_deep_rows(store, tenant, segment_id, depth)
    page = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id)
    )
    assert [a.customer.id for a in page.assignments] == ["a", "deep", "z"]
    assert json.loads(page.assignments[0].mixins_json) == {"n": 1}
    got = (
        await stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="deep")
        )
    ).assignment
    assert got.customer.id == "deep"
    segments = await stubs.segments.ListSegments(segment_pb2.ListSegmentsRequest(tenant=tenant))
    assert [s.id for s in segments.segments] == [segment_id]
    await stubs.segments.GetSegment(
        segment_pb2.GetSegmentRequest(tenant=tenant, segment_id=segment_id)
    )
    for url in (base(tenant, segment_id), f"{base(tenant, segment_id)}/deep"):
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
    async with http.get(f"/customer-segment/{tenant}/segments/{segment_id}") as response:
        assert response.status == 200, await response.text()
    # A PATCH writes the document it read: too deep, it is refused (the mixins must be replaced).
    if depth <= 500:
        await expect_error(
            stubs.segments.PatchSegment(
                patch(tenant, segment_id, ("replace", "/status", '"INACTIVE"'))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "mixins",
        )
    await stubs.segments.PatchSegment(
        patch(
            tenant, segment_id, ("replace", "/mixins", "{}"), ("replace", "/metadata/mixins", "{}")
        )
    )
