"""Large but allowed assignments stay readable through every path: REST GET, list and search,
gRPC Get, List and Search. A page that would not fit a default gRPC client's 4 MiB ends early
with the cursor of the rest; one item is never cut, and never answered 429."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest_asyncio
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2

from customer_segments.grpc.server import GrpcServer
from customer_segments.limits import DEFAULT_CLIENT_RECEIVE_BYTES, MAX_ANSWER_BYTES
from tests.conftest import Stubs
from tests.helpers import AssignmentFields, admin_tokens

ITEM_BYTES = 100_000
ITEMS = 60  # the default page size: 6 MB of mixins, more than a default client receives


def base(tenant: str, segment_id: str) -> str:
    return f"/customer-segment/{tenant}/segments/{segment_id}/customers"


def mixins_of(n: int) -> dict[str, Any]:
    return {"n": n, "blob": f"{n:03d}" + "x" * ITEM_BYTES}


def listings(stubs: Stubs) -> list[tuple[Any, Any]]:
    """ListAssignments and SearchAssignments, each with its request message (same fields)."""
    return [
        (stubs.assignments.ListAssignments, pb.ListAssignmentsRequest),
        (stubs.assignments.SearchAssignments, pb.SearchAssignmentsRequest),
    ]


async def seed(stubs: Stubs, tenant: str, segment_id: str) -> None:
    """60 assignments of 100 KB each, in two requests of 3 MB."""
    for first in (0, ITEMS // 2):
        items = [
            pb.BulkUpsertItem(customer_id=f"c{n:02d}", mixins_json=json.dumps(mixins_of(n)))
            for n in range(first, first + ITEMS // 2)
        ]
        async for batch in stubs.assignments.BulkUpsertAssignments(
            pb.BulkUpsertAssignmentsRequest(tenant=tenant, segment_id=segment_id, items=items)
        ):
            assert {result.code for result in batch.results} == {201}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def roomy_stubs(grpc_server: GrpcServer) -> AsyncIterator[Stubs]:
    """A client that receives as much as the server may send (for one very large item)."""
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{grpc_server.port}",
        interceptors=admin_tokens(),
        options=[("grpc.max_receive_message_length", MAX_ANSWER_BYTES)],
    ) as channel:
        yield Stubs(channel)


async def test_a_page_too_large_for_a_default_client_ends_early_with_a_cursor(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await seed(stubs, tenant, segment_id)
    for method, message in listings(stubs):
        seen: list[str] = []
        request = message(tenant=tenant, segment_id=segment_id)
        pages = 0
        while True:
            page = await method(request)  # a default client: fails if the page is over 4 MiB
            assert page.ByteSize() <= DEFAULT_CLIENT_RECEIVE_BYTES
            assert page.assignments, "every page holds at least one item"
            seen += [assignment.customer.id for assignment in page.assignments]
            pages += 1
            if not page.next_page_token:
                break
            request = message(tenant=tenant, segment_id=segment_id, page_token=page.next_page_token)
        assert pages >= 2
        assert seen == [f"c{n:02d}" for n in range(ITEMS)]  # each once, in order


async def test_a_page_by_number_or_backwards_ends_early_too(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await seed(stubs, tenant, segment_id)
    first = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id, page_size=50)
    )
    kept = len(first.assignments)
    assert 0 < kept < 50 and first.next_page_token
    rest = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(
            tenant=tenant, segment_id=segment_id, page_size=50, page_token=first.next_page_token
        )
    )
    assert rest.assignments[0].customer.id == f"c{kept:02d}"
    assert rest.previous_page_token
    back = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(
            tenant=tenant, segment_id=segment_id, page_size=50, page_token=rest.previous_page_token
        )
    )
    # The page before the second one is cut at its end; its cursor goes on from the cut.
    assert back.assignments[0].customer.id == "c00" and back.next_page_token
    after = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(
            tenant=tenant, segment_id=segment_id, page_size=50, page_token=back.next_page_token
        )
    )
    assert after.assignments[0].customer.id == f"c{len(back.assignments):02d}"


async def test_rest_list_and_search_follow_the_cursor_through_a_large_segment(
    http: aiohttp.ClientSession, stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await seed(stubs, tenant, segment_id)
    for method, path in (("GET", ""), ("POST", "/search")):
        seen: list[int] = []
        params: dict[str, str] = {}
        while True:
            async with http.request(
                method, base(tenant, segment_id) + path, params=params, json={} if path else None
            ) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
                seen += [item["mixins"]["n"] for item in body]
                assert all(item["mixins"] == mixins_of(item["mixins"]["n"]) for item in body)
                cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                break
            params = {"next": cursor}
        assert seen == list(range(ITEMS))


async def test_an_assignment_over_4_mib_is_readable_everywhere(
    http: aiohttp.ClientSession, roomy_stubs: Stubs, tenant: str, segment_id: str
) -> None:
    big = {"blob": "y" * (6 * 1024 * 1024), "n": 2**70}
    url = f"{base(tenant, segment_id)}/big"
    async with http.put(url, json={"mixins": big}) as response:
        assert response.status == 201, await response.text()
    async with http.put(f"{base(tenant, segment_id)}/small", json={}) as response:
        assert response.status == 201
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["mixins"] == big
    for method, path in (("GET", ""), ("POST", "/search")):
        async with http.request(
            method, base(tenant, segment_id) + path, json={} if path else None
        ) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
            # The large item alone; the next page goes on after it.
            assert [item["customer"]["id"] for item in page] == ["big"]
            assert page[0]["mixins"] == big
            cursor = response.headers["X-Next-Cursor"]
        async with http.request(
            method, base(tenant, segment_id) + path, params={"next": cursor}, json={}
        ) as response:
            assert [item["customer"]["id"] for item in await response.json()] == ["small"]
    key: AssignmentFields = {"tenant": tenant, "segment_id": segment_id, "customer_id": "big"}
    got = (await roomy_stubs.assignments.GetAssignment(pb.GetAssignmentRequest(**key))).assignment
    assert json.loads(got.mixins_json) == big
    for method, message in listings(roomy_stubs):
        page = await method(message(tenant=tenant, segment_id=segment_id))
        assert [a.customer.id for a in page.assignments] == ["big"] and page.next_page_token


async def test_segment_pages_end_early_too(stubs: Stubs, tenant: str) -> None:
    for n in range(ITEMS):
        await stubs.segments.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                tenant=tenant,
                segment=segment_pb2.Segment(
                    id=f"s{n:02d}",
                    name={"en": "S"},
                    site_code="main",
                    mixins_json=json.dumps(mixins_of(n)),
                ),
            )
        )
    seen: list[str] = []
    request = segment_pb2.ListSegmentsRequest(tenant=tenant)
    while True:
        page = await stubs.segments.ListSegments(request)
        seen += [segment.id for segment in page.segments]
        if not page.next_page_token:
            break
        request = segment_pb2.ListSegmentsRequest(tenant=tenant, page_token=page.next_page_token)
    assert seen == [f"s{n:02d}" for n in range(ITEMS)]


async def test_a_body_that_grows_past_what_the_service_accepts_is_413(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    """9.5 MB of `1e15` is 36 MB once the numbers are written out (1000000000000000.0)."""
    body = b'{"mixins":{"n":[' + b",".join([b"1e15"] * 1_900_000) + b"]}}"
    url = f"{base(tenant, segment_id)}/grown"
    headers = {"Content-Type": "application/json"}
    async with http.put(url, data=body, headers=headers) as response:
        assert response.status == 413, await response.text()
        assert (await response.json())["code"] == 413
    async with http.get(url) as response:
        assert response.status == 404  # nothing written


async def test_a_segment_bulk_body_too_large_for_the_service_is_413_not_429(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    """The items go to the service in one BulkUpsertSegments request, as assignment bulk
    items do: one that grows past its limit refuses the request as a whole."""
    grown = b'{"n":[' + b",".join([b"1e15"] * 1_900_000) + b"]}"
    body = b'[{"id":"big","name":{"en":"B"},"siteCode":"main","mixins":' + grown + b"}]"
    url = f"/customer-segment/{tenant}/segments/bulk"
    async with http.put(url, data=body, headers={"Content-Type": "application/json"}) as response:
        assert response.status == 413, await response.text()
        answered = await response.json()
    assert answered["code"] == 413 and "larger than max" not in answered["message"], answered
    async with http.get(f"/customer-segment/{tenant}/segments/big") as response:
        assert response.status == 404  # nothing written
