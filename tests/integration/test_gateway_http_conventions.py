"""HTTP as clients expect it, beyond Emporix: ETag and conditional requests (If-None-Match 304,
If-Match 412), Location on 201, 415 for a body that is not JSON, gzip, and a 503 that names
no address. Over real HTTP -> gRPC -> both databases."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest
from customersegment.v1 import assignment_pb2, segment_pb2

from customer_segments.gateway.app import start_gateway
from tests.conftest import Stubs
from tests.e2e.test_service_process import free_port
from tests.helpers import AssignmentFields, bearer
from tests.integration.test_gateway_assignments import answer, assert_error, base
from tests.integration.test_gateway_segments import GOLDEN, segments


async def _put(http: aiohttp.ClientSession, url: str, body: Any, **headers: str) -> int:
    async with http.put(url, json=body, headers=headers) as response:
        return response.status


async def test_an_assignment_has_its_version_as_etag_and_if_none_match_is_304(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{base(tenant, segment_id)}/c1"
    async with http.put(url, json={"mixins": {"a": 1}}) as response:
        assert response.status == 201 and response.headers["Location"] == url
    async with http.put(url, json={"mixins": {"a": 2}}) as response:
        assert response.status == 204 and "Location" not in response.headers
    async with http.get(url) as response:
        assert response.status == 200 and response.headers["ETag"] == '"2"'
    for matching in ('"2"', 'W/"2"', '"7", "2"', "*"):
        async with http.get(url, headers={"If-None-Match": matching}) as response:
            assert response.status == 304, matching
            assert response.headers["ETag"] == '"2"' and await response.read() == b""
    async with http.get(url, headers={"If-None-Match": '"1"'}) as response:
        status, body = await answer(response)
    assert status == 200 and body["metadata"]["version"] == 2


async def test_a_segment_has_its_version_as_etag_and_location_on_201(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    async with http.post(segments(tenant), json=GOLDEN) as response:
        assert response.status == 201
        location = response.headers["Location"]
    assert location == f"{segments(tenant)}/{GOLDEN['id']}"
    generated_body = {key: value for key, value in GOLDEN.items() if key != "id"}
    async with http.post(segments(tenant), json=generated_body) as response:
        status, body = await answer(response)
        assert status == 201 and response.headers["Location"] == f"{segments(tenant)}/{body['id']}"
    url = f"{segments(tenant)}/new one"
    async with http.put(url, json=generated_body) as response:
        assert response.status == 201
        assert response.headers["Location"] == f"{segments(tenant)}/new%20one"
    async with http.get(location) as response:
        assert response.status == 200 and response.headers["ETag"] == '"1"'
    async with http.get(location, headers={"If-None-Match": '"1"'}) as response:
        assert response.status == 304 and await response.read() == b""
    async with http.get(location, headers={"If-None-Match": '"2"'}) as response:
        assert response.status == 200


async def test_if_match_makes_an_assignment_write_conditional(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{base(tenant, segment_id)}/c2"
    # `*`: it must exist; nothing is written when it does not.
    assert await _put(http, url, {"mixins": {"a": 1}}, **{"If-Match": "*"}) == 412
    async with http.get(url) as response:
        assert response.status == 404
    assert await _put(http, url, {}) == 201
    assert await _put(http, url, {"mixins": {"a": 1}}, **{"If-Match": "*"}) == 204  # now 2
    async with http.put(url, json={}, headers={"If-Match": '"1"'}) as response:
        status, body = await answer(response)
    assert status == 412
    assert_error(body, 412)
    assert body["status"] == "Precondition Failed"
    assert await _put(http, url, {}, **{"If-Match": 'W/"2"'}) == 412  # weak never matches
    # The body's version keeps its 409; both given and different: 412.
    assert await _put(http, url, {"metadata": {"version": 1}}) == 409
    assert await _put(http, url, {"metadata": {"version": 2}}, **{"If-Match": '"1"'}) == 412
    assert await _put(http, url, {}, **{"If-Match": '"1", "2"'}) == 204  # now 3
    # DELETE: a version that is not the stored one, or an absent assignment, is 412.
    async with http.delete(url, headers={"If-Match": '"2"'}) as response:
        assert response.status == 412
    async with http.get(url) as response:
        assert response.status == 200 and response.headers["ETag"] == '"3"'
    async with http.delete(url, headers={"If-Match": '"3"'}) as response:
        assert response.status == 204
    for condition in ('"3"', "*"):
        async with http.delete(url, headers={"If-Match": condition}) as response:
            assert response.status == 412, condition
    async with http.delete(url) as response:
        assert response.status == 204  # still idempotent without If-Match


async def test_if_match_makes_a_segment_write_conditional(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    url = f"{segments(tenant)}/{GOLDEN['id']}"
    document = {key: value for key, value in GOLDEN.items() if key != "id"}
    assert await _put(http, url, document, **{"If-Match": '"1"'}) == 412
    assert await _put(http, url, document) == 201
    assert await _put(http, url, document, **{"If-Match": '"1"'}) == 204  # now 2
    assert await _put(http, url, document, **{"If-Match": '"1"'}) == 412
    assert await _put(http, url, document | {"metadata": {"version": 1}}) == 409
    patch = [{"op": "replace", "path": "/status", "value": "INACTIVE"}]
    async with http.patch(url, json=patch, headers={"If-Match": '"1"'}) as response:
        status, body = await answer(response)
    assert status == 412
    assert_error(body, 412)
    async with http.get(url) as response:
        assert (await response.json())["status"] == "ACTIVE"
    async with http.patch(url, json=patch, headers={"If-Match": '"2"'}) as response:
        assert response.status == 204  # now 3
    async with http.delete(url, headers={"If-Match": '"2"'}) as response:
        assert response.status == 412
    async with http.delete(url, headers={"If-Match": '"3"'}) as response:
        assert response.status == 204
    async with http.patch(url, json=patch, headers={"If-Match": "*"}) as response:
        assert response.status == 412


async def test_grpc_writes_with_a_version_are_aborted_when_it_is_not_the_stored_one(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    key: AssignmentFields = {"tenant": tenant, "segment_id": segment_id, "customer_id": "c3"}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.assignments.RemoveAssignment(
            assignment_pb2.RemoveAssignmentRequest(**key, version=1)
        )
    assert refused.value.code() == grpc.StatusCode.ABORTED  # absent
    await stubs.assignments.UpsertAssignment(assignment_pb2.UpsertAssignmentRequest(**key))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.assignments.RemoveAssignment(
            assignment_pb2.RemoveAssignmentRequest(**key, version=2)
        )
    assert refused.value.code() == grpc.StatusCode.ABORTED
    await stubs.assignments.RemoveAssignment(
        assignment_pb2.RemoveAssignmentRequest(**key, version=1)
    )
    operation = segment_pb2.JsonPatchOperation(op="replace", path="/siteCode", value_json='"x"')
    for call in (
        stubs.segments.PatchSegment(
            segment_pb2.PatchSegmentRequest(
                tenant=tenant, segment_id=segment_id, operations=[operation], version=2
            )
        ),
        stubs.segments.DeleteSegment(
            segment_pb2.DeleteSegmentRequest(tenant=tenant, segment_id=segment_id, version=2)
        ),
        stubs.segments.DeleteSegment(
            segment_pb2.DeleteSegmentRequest(tenant=tenant, segment_id="absent", version=1)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.ABORTED
    segment = (
        await stubs.segments.GetSegment(
            segment_pb2.GetSegmentRequest(tenant=tenant, segment_id=segment_id)
        )
    ).segment
    assert segment.site_code == "main" and segment.metadata.version == 1
    await stubs.segments.DeleteSegment(
        segment_pb2.DeleteSegmentRequest(tenant=tenant, segment_id=segment_id, version=1)
    )


async def test_if_match_needs_no_read_scope_and_creates_nothing(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    """The service checks If-Match in the write itself: a token that may only write is enough,
    and an absent resource is 412 however the race with a delete goes."""
    manage = {"Authorization": bearer(tenant, "customersegment.segment_manage")}
    url = f"{base(tenant, segment_id)}/c8"
    assert await _put(http, url, {}, **manage, **{"If-Match": '"1"'}) == 412
    async with http.get(url) as response:
        assert response.status == 404
    assert await _put(http, url, {}) == 201
    for condition in ('"1"', "*"):  # now 2, then 3
        assert await _put(http, url, {}, **manage, **{"If-Match": condition}) == 204, condition
    assert await _put(http, url, {}, **manage, **{"If-Match": '"abc"'}) == 412
    segment = f"{segments(tenant)}/{segment_id}"
    document = {"name": {"en": "Gold"}, "siteCode": "main", "status": "ACTIVE"}
    assert await _put(http, segment, document, **manage, **{"If-Match": '"1"'}) == 204
    async with http.delete(
        f"{segments(tenant)}/absent", headers={**manage, "If-Match": "*"}
    ) as response:
        assert response.status == 412


async def test_grpc_writes_that_must_find_the_resource_never_create_it(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    key: AssignmentFields = {"tenant": tenant, "segment_id": segment_id, "customer_id": "c9"}
    for call in (
        stubs.assignments.UpsertAssignment(
            assignment_pb2.UpsertAssignmentRequest(**key, version=1, must_exist=True)
        ),
        stubs.assignments.UpsertAssignment(
            assignment_pb2.UpsertAssignmentRequest(**key, must_exist=True)
        ),
        stubs.assignments.RemoveAssignment(
            assignment_pb2.RemoveAssignmentRequest(**key, must_exist=True)
        ),
        stubs.segments.UpsertSegment(
            segment_pb2.UpsertSegmentRequest(
                tenant=tenant,
                segment_id="absent",
                segment=segment_pb2.Segment(name={"en": "A"}, site_code="main"),
                must_exist=True,
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stubs.assignments.GetAssignment(assignment_pb2.GetAssignmentRequest(**key))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stubs.segments.GetSegment(
            segment_pb2.GetSegmentRequest(tenant=tenant, segment_id="absent")
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    written = await stubs.segments.UpsertSegment(
        segment_pb2.UpsertSegmentRequest(
            tenant=tenant,
            segment_id=segment_id,
            segment=segment_pb2.Segment(name={"en": "Gold"}, site_code="main"),
            must_exist=True,
        )
    )
    assert not written.created and written.segment.metadata.version == 2


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_a_body_that_is_not_json_by_its_content_type_is_415(
    http: aiohttp.ClientSession, tenant: str, segment_id: str, content_type: str
) -> None:
    url = f"{base(tenant, segment_id)}/c4"
    async with http.put(url, data=b"{}", headers={"Content-Type": content_type}) as response:
        status, body = await answer(response)
    assert status == 415
    assert_error(body, 415, "Content-Type")
    assert body["details"]["field"] == "Content-Type"
    async with http.get(url) as response:
        assert response.status == 404  # nothing written


async def test_json_content_types_and_none_at_all_are_read(
    http: aiohttp.ClientSession, bare_http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{base(tenant, segment_id)}/c5"
    for content_type in ("application/json; charset=UTF-8", "application/merge-patch+json"):
        async with http.put(url, data=b"{}", headers={"Content-Type": content_type}) as response:
            assert response.status in (201, 204), content_type
    patch = b'[{"op": "replace", "path": "/siteCode", "value": "b"}]'
    segment = f"{segments(tenant)}/{segment_id}"
    headers = {"Content-Type": "application/json-patch+json"}
    async with http.patch(segment, data=patch, headers=headers) as response:
        assert response.status == 204
    # No Content-Type at all: read as JSON (aiohttp adds one to `data=`; skip it).
    async with http.put(
        url, data=b'{"mixins": {"a": 1}}', skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 204
    async with http.get(url) as response:
        assert (await response.json())["mixins"] == {"a": 1}


async def test_answers_over_1_kb_are_gzipped_when_accepted(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{base(tenant, segment_id)}/c6"
    assert await _put(http, url, {"mixins": {"text": "x" * 2000}}) == 201
    async with http.get(url, headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers.get("Content-Encoding") == "gzip"
        assert response.headers["Vary"] == "Accept-Encoding"
        assert response.headers["ETag"] == '"1"'
        assert (await response.json())["mixins"] == {"text": "x" * 2000}
    for refused in ("identity", "gzip;q=0", "deflate, gzip; q=0.0"):
        async with http.get(url, headers={"Accept-Encoding": refused}) as response:
            assert "Content-Encoding" not in response.headers, refused
            assert (await response.json())["mixins"] == {"text": "x" * 2000}
    async with http.get(
        url, headers={"Accept-Encoding": "gzip", "If-None-Match": '"1"'}
    ) as response:
        assert response.status == 304 and "Content-Encoding" not in response.headers
    small = f"{base(tenant, segment_id)}/c7"
    assert await _put(http, small, {}) == 201
    async with http.get(small, headers={"Accept-Encoding": "gzip"}) as response:
        assert response.status == 200 and "Content-Encoding" not in response.headers


async def test_a_503_names_no_address_of_the_grpc_server() -> None:
    port = free_port()  # nothing listens there: every call fails UNAVAILABLE
    gateway = await start_gateway(f"127.0.0.1:{port}", "127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as client,
            client.get(
                "/customer-segment/acme/segments/s1",
                headers={"Authorization": "Bearer x"},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response,
        ):
            status, body = await answer(response)
            assert int(response.headers["Retry-After"]) > 0
    finally:
        await gateway.stop()
    assert status == 503
    assert_error(body, 503)
    assert "127.0.0.1" not in body["message"] and str(port) not in body["message"], body
