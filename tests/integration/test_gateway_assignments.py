"""The REST gateway's Customers Assignments paths over real HTTP -> gRPC -> both databases."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def base(tenant: str, segment_id: str) -> str:
    return f"/customer-segment/{tenant}/segments/{segment_id}/customers"


async def answer(response: aiohttp.ClientResponse) -> tuple[int, Any]:
    text = await response.text()
    return response.status, (json.loads(text) if text else None)


def assert_error(body: Any, code: int, *fragments: str) -> None:
    assert body["code"] == code and isinstance(body["status"], str), body
    for fragment in fragments:
        assert fragment in json.dumps(body), body


async def test_put_get_delete_b2c(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{base(tenant, segment_id)}/98029737"
    mixins = {
        "segmentAttributes": {"membershipStatus": "PREMIUM"},
        "count": 20,
        "big": 123456789012345678901234567890,
    }
    metadata = {"mixins": {"segmentAttributes": "https://example.com/schema.json"}}
    async with http.put(url, json={"mixins": mixins, "metadata": metadata}) as response:
        assert (response.status, await response.read()) == (201, b"")
    async with http.put(
        url, json={"mixins": mixins, "metadata": metadata, "unknownField": 1}
    ) as response:
        assert response.status == 204
    async with http.get(url) as response:
        status, body = await answer(response)
    assert status == 200
    assert body["customer"] == {"id": "98029737"}
    assert "legalEntity" not in body
    assert body["assignmentType"] == "MANUAL"
    assert body["mixins"] == mixins and type(body["mixins"]["count"]) is int
    assert body["metadata"]["version"] == 2 and body["metadata"]["mixins"] == metadata["mixins"]
    assert TIMESTAMP.fullmatch(body["metadata"]["createdAt"]) and TIMESTAMP.fullmatch(
        body["metadata"]["modifiedAt"]
    )
    for _ in range(2):  # idempotent
        async with http.delete(url) as response:
            assert response.status == 204
    async with http.get(url) as response:
        status, body = await answer(response)
    assert status == 404
    assert_error(body, 404, "98029737")


async def test_b2b_path(http: aiohttp.ClientSession, tenant: str, segment_id: str) -> None:
    url = f"{base(tenant, segment_id)}/c1/660af2af69babe3cf6e40771"
    async with http.put(url, json={}) as response:
        assert response.status == 201
    async with http.get(url) as response:
        status, body = await answer(response)
    assert status == 200 and body["legalEntity"] == {"id": "660af2af69babe3cf6e40771"}
    async with http.get(f"{base(tenant, segment_id)}/c1") as response:
        assert response.status == 404  # the B2C assignment is another one
    async with http.delete(url) as response:
        assert response.status == 204


async def test_stale_version_is_409(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{base(tenant, segment_id)}/c1"
    async with http.put(url, json={"metadata": {"version": 4}}) as response:
        assert response.status == 201  # a version for a new assignment: created
    async with http.put(url, json={"metadata": {"version": 4}}) as response:
        status, body = await answer(response)
    assert status == 409
    assert body["message"] == "The resource you are attempting to access has changed."
    async with http.put(url, json={"metadata": {"version": 1}}) as response:
        assert response.status == 204


async def test_unknown_segment_is_404_naming_it(http: aiohttp.ClientSession, tenant: str) -> None:
    for method, url in (
        ("GET", f"{base(tenant, 'nosuch')}/c1"),
        ("PUT", f"{base(tenant, 'nosuch')}/c1"),
        ("GET", base(tenant, "nosuch")),
    ):
        async with http.request(method, url, json={} if method == "PUT" else None) as response:
            status, body = await answer(response)
        assert status == 404
        assert_error(body, 404, "nosuch")
        assert body["resourceId"] == "nosuch"


async def test_bad_input_is_400_naming_the_field(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{base(tenant, segment_id)}/c1"
    cases: list[tuple[str, str, Any, str]] = [
        ("PUT", url, {"mixins": "not an object"}, "mixins"),
        ("PUT", url, {"metadata": {"version": "one"}}, "metadata.version"),
        ("PUT", url, b"{not json", "body"),
        ("PUT", f"/customer-segment/BAD/segments/{segment_id}/customers/c1", {}, "tenant"),
        ("GET", f"{base(tenant, segment_id)}?pageSize=abc", None, "pageSize"),
        ("GET", f"{base(tenant, segment_id)}?pageSize=1001", None, "pageSize"),
        ("GET", f"{base(tenant, segment_id)}?pageNumber=0", None, "pageNumber"),
        ("GET", f"{base(tenant, segment_id)}?sort=nosuch", None, "sort"),
        ("GET", f"{base(tenant, segment_id)}?q=nosuch:1", None, "q"),
        ("POST", f"{base(tenant, segment_id)}/search", {"q": 5}, "q"),
    ]
    for method, target, payload, field in cases:
        kwargs: dict[str, Any] = (
            {"data": payload, "headers": {"Content-Type": "application/json"}}
            if isinstance(payload, bytes)
            else {"json": payload}
        )
        async with http.request(method, target, **kwargs) as response:
            status, body = await answer(response)
        assert status == 400, (target, body)
        assert body["details"]["field"] == field, (target, body)
        assert "Traceback" not in json.dumps(body)


async def test_list_search_paging_total_and_fields(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    items = [
        {"customerId": f"c{n:02d}", **({"legalEntityId": "le1"} if n % 2 else {})}
        for n in range(10)
    ]
    async with http.put(f"{base(tenant, segment_id)}/bulk", json=items) as response:
        assert response.status == 207
    async with http.get(
        base(tenant, segment_id),
        params={"pageSize": "3", "pageNumber": "2"},
        headers={"X-Total-Count": "true"},
    ) as response:
        status, body = await answer(response)
        assert response.headers["X-Total-Count"] == "10"
    assert status == 200 and [b["customer"]["id"] for b in body] == ["c03", "c04", "c05"]
    async with http.get(base(tenant, segment_id)) as response:
        assert "X-Total-Count" not in response.headers
        assert len(await response.json()) == 10
    async with http.post(
        f"{base(tenant, segment_id)}/search",
        json={"q": "legalEntityId:le1"},
        params={"sort": "customerId:desc"},
    ) as response:
        status, body = await answer(response)
    assert [b["customer"]["id"] for b in body] == ["c09", "c07", "c05", "c03", "c01"]
    async with http.get(
        base(tenant, segment_id), params={"fields": "customer.id,metadata.version", "pageSize": "1"}
    ) as response:
        body = await response.json()
    assert body == [{"customer": {"id": "c00"}, "metadata": {"version": 1}}]


async def test_documented_bulk_examples(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    # CustomerAssignmentsUpsert from the Emporix file, plus items that must fail alone.
    items: list[Any] = [
        {
            "customerId": "98029737",
            "legalEntityId": "660af2af69babe3cf6e40771",
            "mixins": {"segmentAttributes": {"membershipStatus": "PREMIUM"}},
            "metadata": {
                "mixins": {
                    "segmentAttributes": "https://res.cloudinary.com/saas-ag/raw/upload/emporix-docs/69537caeb3fd5d378296ae42_segmentAttributes.json"
                }
            },
        },
        {
            "customerId": "18249883",
            "legalEntityId": "628cd20c6e8b2432b6346ca6",
            "metadata": {"version": 1},
        },
        {"customerId": 5},
        {"legalEntityId": "le-without-customer"},
        {"customerId": "98029737", "legalEntityId": "660af2af69babe3cf6e40771"},
    ]
    async with http.put(f"{base(tenant, segment_id)}/bulk", json=items) as response:
        status, body = await answer(response)
    assert status == 207
    assert [(r["index"], r["code"]) for r in body] == [
        (1, 201),
        (2, 201),
        (3, 400),
        (4, 400),
        (5, 204),
    ]
    assert all(set(r) <= {"index", "code", "status", "message"} for r in body)
    assert "customerId" in body[2]["message"] and "customerId" in body[3]["message"]
    assert body[0]["status"] == "Created" and body[2]["status"] == "Bad Request"
    removal = [
        {"customerId": "98029737", "legalEntityId": "660af2af69babe3cf6e40771"},
        {"customerId": ""},
        {"customerId": "never-assigned"},
    ]
    async with http.delete(f"{base(tenant, segment_id)}/bulk", json=removal) as response:
        status, body = await answer(response)
    assert status == 207
    assert [(r["index"], r["code"]) for r in body] == [(1, 204), (2, 400), (3, 204)]


async def test_bulk_item_messages_name_the_rest_fields(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    """The service names each failed item's field by its proto path (mixins_json); the 207
    reads as a single call's 400 would, in the REST body's names."""
    items: list[Any] = [
        {"customerId": "ok"},
        {"customerId": "m", "mixins": {"k": "\u0000"}},
        {"customerId": "n", "metadata": {"mixins": {"k": "\u0000"}}},
        {"legalEntityId": "le1"},
        {"customerId": "x" * 300},
        {"customerId": "ok", "metadata": {"version": 7}},
    ]
    async with http.put(f"{base(tenant, segment_id)}/bulk", json=items) as response:
        status, body = await answer(response)
    assert status == 207
    assert [(r["code"], r.get("message")) for r in body] == [
        (201, None),
        (400, "mixins: must not contain the NUL character (\\u0000)"),
        (400, "metadata.mixins: must not contain the NUL character (\\u0000)"),
        (400, "customerId: is required"),
        (400, "customerId: must have at most 255 characters"),
        (409, "The resource you are attempting to access has changed."),
    ]


async def test_bulk_limits(http: aiohttp.ClientSession, tenant: str, segment_id: str) -> None:
    url = f"{base(tenant, segment_id)}/bulk"
    for payload, fragment in (
        ([{"customerId": f"c{n}"} for n in range(201)], "200"),
        ([], "at least one"),
        ({"customerId": "c"}, "array"),
    ):
        async with http.put(url, json=payload) as response:
            status, body = await answer(response)
        assert status == 400
        assert_error(body, 400, fragment)
    async with http.put(url, json=[{"customerId": f"c{n}"} for n in range(200)]) as response:
        assert response.status == 207 and len(await response.json()) == 200


async def test_routing_never_takes_search_or_bulk_for_a_customer(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    for method, suffix, expected in (
        ("GET", "/search", 405),
        ("GET", "/bulk", 405),
        ("POST", "/bulk", 405),
        ("PUT", "/search", 405),
        ("POST", "/c1", 405),
    ):
        async with http.request(method, base(tenant, segment_id) + suffix) as response:
            status, body = await answer(response)
        assert status == expected, (method, suffix, body)
        assert_error(body, expected)
    async with http.get("/customer-segment/nothing/here") as response:
        status, body = await answer(response)
    assert status == 404
    assert_error(body, 404)


async def test_body_over_ten_megabytes_is_413(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    huge = json.dumps({"mixins": {"blob": "x" * (10 * 1024 * 1024)}})
    async with http.put(
        f"{base(tenant, segment_id)}/c1", data=huge, headers={"Content-Type": "application/json"}
    ) as response:
        status, body = await answer(response)
    assert status == 413
    assert_error(body, 413)


async def test_request_id_is_echoed_or_made(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    async with http.get(base(tenant, segment_id), headers={"X-Request-Id": "req-123"}) as response:
        assert response.headers["X-Request-Id"] == "req-123"
    async with http.get(base(tenant, segment_id)) as response:
        assert len(response.headers["X-Request-Id"]) >= 16


async def test_version_out_of_int64_range_is_400(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    """Found by the contract test: 2**63 used to reach the protobuf setter and answer 500."""
    for version in (2**63, 0, -1):
        async with http.put(
            f"{base(tenant, segment_id)}/c1", json={"metadata": {"version": version}}
        ) as response:
            status, body = await answer(response)
        assert status == 400 and body["details"]["field"] == "metadata.version", body
