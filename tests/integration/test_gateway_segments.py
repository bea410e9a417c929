"""The REST gateway's Segments paths, with the documented examples, over HTTP -> gRPC."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.integration.test_gateway_assignments import TIMESTAMP, answer, assert_error

# The SegmentCreation example of the Emporix file.
GOLDEN: dict[str, Any] = {
    "id": "628cd20c6e8b2432b6346ca6",
    "name": {"en": "Golden Segment"},
    "description": {"en": "Golden Segment"},
    "validity": {"from": "2024-04-17T08:00:00.000Z", "to": "2025-04-17T08:00:00.000Z"},
    "status": "ACTIVE",
    "siteCode": "main",
}
PLATINUM: dict[str, Any] = {
    "id": "61ge81e13562e22001h6cf456",
    "name": {"en": "Platinum Segment"},
    "description": {"en": "Platinum Segment"},
    "validity": {"from": "2024-07-20T08:00:00.000Z", "to": "2025-07-20T08:00:00.000Z"},
    "status": "INACTIVE",
    "siteCode": "main",
}


def segments(tenant: str) -> str:
    return f"/customer-segment/{tenant}/segments"


async def test_create_get_upsert_patch_delete(http: aiohttp.ClientSession, tenant: str) -> None:
    async with http.post(segments(tenant), json=GOLDEN) as response:
        assert await answer(response) == (201, {"id": GOLDEN["id"]})
    async with http.post(segments(tenant), json=GOLDEN) as response:
        status, body = await answer(response)
    assert status == 409
    assert_error(body, 409, "already exists")
    url = f"{segments(tenant)}/{GOLDEN['id']}"
    async with http.get(url) as response:
        status, body = await answer(response)
    assert status == 200
    assert {key: body[key] for key in GOLDEN} == GOLDEN
    assert body["metadata"]["version"] == 1 and TIMESTAMP.fullmatch(body["metadata"]["createdAt"])
    # The SegmentUpdate example, with the version it read.
    update = {key: value for key, value in GOLDEN.items() if key != "id"} | {
        "metadata": {"version": 1}
    }
    async with http.put(url, json=update) as response:
        assert response.status == 204
    async with http.put(url, json=update) as response:
        status, body = await answer(response)
    assert (
        status == 409
        and body["message"] == "The resource you are attempting to access has changed."
    )
    # The PATCH examples.
    patches: list[list[dict[str, Any]]] = [
        [{"op": "replace", "path": "/status", "value": "INACTIVE"}],
        [{"op": "replace", "path": "/name", "value": {"en": "New name"}}],
        [{"op": "remove", "path": "/description"}],
        # RFC 6902: an add needs the parent; the example's replace then finds the member.
        [{"op": "add", "path": "/mixins/productCustomAttributes", "value": {}}],
        [{"op": "add", "path": "/mixins/productCustomAttributes/pricingMeasurePrice", "value": 10}],
        [
            {
                "op": "replace",
                "path": "/mixins/productCustomAttributes/pricingMeasurePrice",
                "value": 15,
            }
        ],
    ]
    for patch in patches:
        async with http.patch(url, json=patch) as response:
            assert response.status == 204, await response.text()
    async with http.get(url) as response:
        body = await response.json()
    assert body["status"] == "INACTIVE" and body["name"] == {"en": "New name"}
    assert "description" not in body
    assert body["mixins"] == {"productCustomAttributes": {"pricingMeasurePrice": 15}}
    assert body["metadata"]["version"] == 2 + len(patches)
    async with http.patch(
        url, json=[{"op": "replace", "path": "/nothing/here", "value": 1}]
    ) as response:
        status, body = await answer(response)
    assert status == 400 and body["details"]["field"] == "[1].path"
    async with http.delete(url) as response:
        assert response.status == 204
    async with http.get(url) as response:
        status, body = await answer(response)
    assert status == 404 and body["resourceId"] == GOLDEN["id"]


async def test_delete_needs_force_delete_with_assignments(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    async with http.post(segments(tenant), json=GOLDEN) as response:
        assert response.status == 201
    url = f"{segments(tenant)}/{GOLDEN['id']}"
    async with http.put(f"{url}/customers/c1", json={}) as response:
        assert response.status == 201
    async with http.delete(url) as response:
        status, body = await answer(response)
    assert status == 400
    assert_error(body, 400, "force")
    async with http.delete(url, params={"forceDelete": "true"}) as response:
        assert response.status == 204
    async with http.get(f"{url}/customers/c1") as response:
        assert response.status == 404


async def test_bulk_paths_with_documented_examples(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    async with http.post(
        f"{segments(tenant)}/bulk", json=[GOLDEN, PLATINUM, {"name": {"en": "No site"}}]
    ) as response:
        status, body = await answer(response)
    assert status == 207
    assert [(r["index"], r["code"]) for r in body] == [(1, 201), (2, 201), (3, 400)]
    assert body[0]["id"] == GOLDEN["id"] and "siteCode" in body[2]["message"]
    async with http.post(f"{segments(tenant)}/bulk", json=[GOLDEN]) as response:
        status, body = await answer(response)
    assert [(r["index"], r["code"], r["id"]) for r in body] == [(1, 409, GOLDEN["id"])]
    # The SegmentsUpdate example: versions 1 and 2; the second is stale.
    updates = [
        GOLDEN | {"metadata": {"version": 1}},
        PLATINUM | {"metadata": {"version": 2}},
        {"name": {"en": "x"}, "siteCode": "main"},
    ]
    async with http.put(f"{segments(tenant)}/bulk", json=updates) as response:
        status, body = await answer(response)
    assert [(r["index"], r["code"]) for r in body] == [(1, 204), (2, 409), (3, 400)]
    async with http.delete(
        f"{segments(tenant)}/bulk", json=[GOLDEN["id"], "nosuch", 7]
    ) as response:
        status, body = await answer(response)
    assert [(r["index"], r["code"]) for r in body] == [(1, 204), (2, 404), (3, 400)]


async def test_list_search_and_segments_of_a_customer(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    async with http.post(f"{segments(tenant)}/bulk", json=[GOLDEN, PLATINUM]) as response:
        assert response.status == 207
    async with http.put(
        f"{segments(tenant)}/{PLATINUM['id']}/customers/c9/le9", json={}
    ) as response:
        assert response.status == 201
    async with http.get(
        segments(tenant), headers={"X-Total-Count": "true"}, params={"sort": "id"}
    ) as response:
        status, body = await answer(response)
        assert status == 200 and response.headers["X-Total-Count"] == "2"
    assert [s["id"] for s in body] == sorted([GOLDEN["id"], PLATINUM["id"]])
    async with http.post(f"{segments(tenant)}/search", json={"q": "status:ACTIVE"}) as response:
        assert [s["id"] for s in await response.json()] == [GOLDEN["id"]]
    async with http.get(
        segments(tenant), params={"customerId": "c9", "legalEntityId": "le9", "fields": "id"}
    ) as response:
        assert await response.json() == [{"id": PLATINUM["id"]}]


async def test_bad_segment_bodies_name_the_field(http: aiohttp.ClientSession, tenant: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"siteCode": "main"}, "name"),
        ({"name": {"en": "x"}}, "siteCode"),
        ({"name": {"en": "x"}, "siteCode": "main", "status": "SOMETIMES"}, "status"),
        (
            {"name": {"en": "x"}, "siteCode": "main", "validity": {"from": "yesterday"}},
            "validity.from",
        ),
        ({"name": "x", "siteCode": "main"}, "name"),
    ]
    for body, field in cases:
        async with http.post(segments(tenant), json=body) as response:
            status, error = await answer(response)
        assert status == 400, (body, error)
        assert error["details"]["field"] == field, (body, error)
    async with http.delete(f"{segments(tenant)}/x", params={"forceDelete": "maybe"}) as response:
        status, error = await answer(response)
    assert status == 400 and error["details"]["field"] == "forceDelete"


async def test_a_validity_out_of_range_in_utc_is_400_naming_it(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    # Once a 500: the offset carries the instant out of the years 1 to 9999 in UTC.
    async with http.post(segments(tenant), json={**GOLDEN, "validity": {}}) as response:
        assert response.status == 201
    url = f"{segments(tenant)}/{GOLDEN['id']}"
    for value in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        for name in ("from", "to"):
            document = {**PLATINUM, "validity": {name: value}}
            upsert = {key: item for key, item in document.items() if key != "id"}
            patch = [{"op": "add", "path": f"/validity/{name}", "value": value}]
            for method, path, body in [
                ("POST", segments(tenant), document),
                ("PUT", url, upsert),
                ("PATCH", url, patch),
            ]:
                async with http.request(method, path, json=body) as response:
                    status, error = await answer(response)
                assert status == 400, (method, value, error)
                assert error["details"]["field"] == f"validity.{name}", (method, error)
                assert "year 9999" in error["message"]
            async with http.get(
                segments(tenant), params={"q": f"validity.{name}:<{value}"}
            ) as response:
                status, error = await answer(response)
            assert status == 400 and error["details"]["field"] == "q"
    async with http.get(url) as response:
        status, body = await answer(response)
    assert status == 200 and "validity" not in body and body["metadata"]["version"] == 1


async def test_openapi_description_is_served(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.yaml") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/yaml")
        text = await response.text()
    assert "/customer-segment/{tenant}/segments/{segmentId}/customers/bulk:" in text
    assert "Items Assignments" not in text
