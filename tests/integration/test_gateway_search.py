"""Search and cursor paging over REST: q forms, X-Next-Cursor/X-Prev-Cursor, next/prev."""

from __future__ import annotations

import aiohttp

from tests.integration.test_gateway_assignments import answer, assert_error, base


async def _assign(http: aiohttp.ClientSession, url: str, count: int) -> None:
    for n in range(count):
        mixins = {"tier": "gold" if n % 2 else "silver", "score": n, "profile": {"vip": n == 3}}
        async with http.put(f"{url}/c{n}", json={"mixins": mixins}) as response:
            assert response.status == 201


async def _ids(response: aiohttp.ClientResponse) -> list[str]:
    status, body = await answer(response)
    assert status == 200, body
    return [item["customer"]["id"] for item in body]


async def test_cursor_pages_forwards_and_back(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = base(tenant, segment_id)
    await _assign(http, url, 7)
    headers = {"X-Total-Count": "true"}
    async with http.get(url, params={"pageSize": "3"}, headers=headers) as response:
        assert await _ids(response) == ["c0", "c1", "c2"]
        assert response.headers["X-Total-Count"] == "7"
        assert "X-Prev-Cursor" not in response.headers
        cursor = response.headers["X-Next-Cursor"]
    params = {"pageSize": "3", "pageNumber": "9", "next": cursor}
    async with http.get(url, params=params, headers=headers) as response:
        assert await _ids(response) == ["c3", "c4", "c5"]
        assert "X-Total-Count" not in response.headers  # ignored in cursor mode
        following, preceding = response.headers["X-Next-Cursor"], response.headers["X-Prev-Cursor"]
    async with http.get(url, params={"pageSize": "3", "next": following}) as response:
        assert await _ids(response) == ["c6"]
        assert "X-Next-Cursor" not in response.headers
    async with http.get(url, params={"pageSize": "3", "prev": preceding}) as response:
        assert await _ids(response) == ["c0", "c1", "c2"]
        assert "X-Prev-Cursor" not in response.headers
    async with http.post(
        f"{url}/search", params={"pageSize": "2", "sort": "customerId:desc"}, json={"q": "tier:x"}
    ) as response:
        status, body = await answer(response)
    assert status == 400 and body["details"]["field"] == "q"


async def test_cursor_errors_name_the_parameter(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = base(tenant, segment_id)
    await _assign(http, url, 3)
    async with http.get(url, params={"pageSize": "1"}) as response:
        cursor = response.headers["X-Next-Cursor"]
    for params, field in (
        ({"next": cursor, "prev": cursor}, "next"),
        ({"next": cursor[:-2] + "xx"}, "next"),
        ({"prev": "garbage"}, "prev"),
        ({"next": cursor, "sort": "customerId:desc"}, "next"),  # another query's cursor
    ):
        async with http.get(url, params=params) as response:
            status, body = await answer(response)
        assert status == 400, body
        assert_error(body, 400)
        assert body["details"]["field"] == field, body


async def test_q_forms_over_rest(http: aiohttp.ClientSession, tenant: str, segment_id: str) -> None:
    url = base(tenant, segment_id)
    await _assign(http, url, 6)
    for q, expected in (
        ("mixins.tier:gold", ["c1", "c3", "c5"]),
        ("mixins.score:(>=2 AND <4)", ["c2", "c3"]),
        ("mixins.profile.vip:true", ["c3"]),
        ("customerId:~^c[0-2]$ mixins.tier:silver", ["c0", "c2"]),
        ("customerId:(c1,c4) legalEntityId:null", ["c1", "c4"]),
        ("mixins.nothing:missing metadata.version:1", ["c0", "c1", "c2", "c3", "c4", "c5"]),
        ('metadata.createdAt:>"2000-01-01T00:00:00.000Z"', ["c0", "c1", "c2", "c3", "c4", "c5"]),
    ):
        async with http.post(f"{url}/search", json={"q": q}) as response:
            assert await _ids(response) == expected, q
        async with http.get(url, params={"q": q}) as response:
            assert await _ids(response) == expected, q


async def test_segments_page_by_cursor(http: aiohttp.ClientSession, tenant: str) -> None:
    url = f"/customer-segment/{tenant}/segments"
    for n in range(3):
        body = {"id": f"s{n}", "name": {"en": "S"}, "siteCode": "main", "mixins": {"n": n}}
        async with http.post(url, json=body) as response:
            assert response.status == 201
    async with http.get(url, params={"pageSize": "2", "sort": "id:desc"}) as response:
        status, body = await answer(response)
        cursor = response.headers["X-Next-Cursor"]
    assert [segment["id"] for segment in body] == ["s2", "s1"]
    async with http.get(url, params={"pageSize": "2", "sort": "id:desc", "next": cursor}) as r:
        status, body = await answer(r)
    assert (status, [segment["id"] for segment in body]) == (200, ["s0"])
    async with http.post(f"{url}/search", json={"q": "mixins.n:>=1 id:~s[02]"}) as response:
        status, body = await answer(response)
    assert (status, [segment["id"] for segment in body]) == (200, ["s2"])
