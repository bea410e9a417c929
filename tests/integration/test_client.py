"""customer_segments.client against the real server on loopback, on both databases: every
method, typed errors, tokens, and streaming bulk of 10,000 items."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from customer_segments.client import (
    AlreadyExists,
    AssignmentType,
    BulkRemoveItem,
    BulkSegmentItem,
    BulkUpsertItem,
    CustomerSegmentsClient,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PatchOperation,
    PermissionDenied,
    SegmentFields,
    SegmentStatus,
    Unauthenticated,
)
from customer_segments.grpc.server import GrpcServer
from tests.helpers import token

BIG = 12345678901234567890123  # more digits than a double keeps


@pytest_asyncio.fixture(loop_scope="session")
async def client(grpc_server: GrpcServer, tenant: str) -> AsyncIterator[CustomerSegmentsClient]:
    async with CustomerSegmentsClient(
        f"127.0.0.1:{grpc_server.port}", token=token(tenant)
    ) as opened:
        yield opened


@pytest_asyncio.fixture(loop_scope="session")
async def gold(client: CustomerSegmentsClient, tenant: str) -> str:
    segment = await client.create_segment(
        tenant,
        segment_id="gold",
        name={"en": "Gold"},
        site_code="main",
        status=SegmentStatus.ACTIVE,
    )
    return segment.id


async def test_assignment_methods(client: CustomerSegmentsClient, tenant: str, gold: str) -> None:
    await client.upsert_customer(tenant, "c1", first_name="Ada", last_name="L", email="a@x.io")
    await client.upsert_legal_entity(tenant, "le1", name="Acme Ltd")

    first = await client.upsert_assignment(
        tenant,
        gold,
        "c1",
        "le1",
        mixins={"tier": 20, "big": BIG, "tags": ["a"]},
        metadata_mixins={"tier": "https://schema.example/tier.json"},
    )
    assert first.created
    again = await client.upsert_assignment(tenant, gold, "c1", "le1", mixins={"tier": 30})
    assert not again.created
    await client.upsert_assignment(tenant, gold, "c2", mixins={"tier": 10})

    got = await client.get_assignment(tenant, gold, "c1", "le1")
    assert got.segment_id == gold
    assert (got.customer.id, got.customer.first_name, got.customer.email) == ("c1", "Ada", "a@x.io")
    assert got.legal_entity is not None
    assert (got.legal_entity.id, got.legal_entity.name) == ("le1", "Acme Ltd")
    assert got.assignment_type is AssignmentType.MANUAL
    assert got.mixins == {"tier": 30}
    assert got.metadata is not None and got.metadata.version == 2
    assert got.metadata.created_at is not None and got.metadata.modified_at is not None
    b2c = await client.get_assignment(tenant, gold, "c2")
    assert b2c.legal_entity is None and b2c.customer.first_name is None

    page = await client.list_assignments(
        tenant, gold, sort="customerId:desc", include_total_count=True
    )
    assert [a.customer.id for a in page.assignments] == ["c2", "c1"]
    assert page.total_count == 2 and page.next_page_token is None
    first_page = await client.list_assignments(tenant, gold, page_size=1, sort="customerId")
    assert first_page.total_count is None and first_page.next_page_token is not None
    second_page = await client.list_assignments(
        tenant, gold, page_size=1, sort="customerId", page_token=first_page.next_page_token
    )
    assert [a.customer.id for a in second_page.assignments] == ["c2"]
    assert second_page.previous_page_token is not None

    found = await client.search_assignments(
        tenant, gold, q="mixins.tier:>=20", fields=["customer.id"]
    )
    assert [(a.customer.id, a.mixins, a.metadata) for a in found.assignments] == [("c1", {}, None)]

    await client.upsert_assignment(tenant, gold, "c3", mixins={"big": BIG})
    assert (await client.get_assignment(tenant, gold, "c3")).mixins == {"big": BIG}

    await client.remove_assignment(tenant, gold, "c1", "le1")
    await client.remove_assignment(tenant, gold, "c1", "le1")  # idempotent
    with pytest.raises(NotFound) as raised:
        await client.get_assignment(tenant, gold, "c1", "le1")
    error = raised.value
    assert error.reason == "ASSIGNMENT_NOT_FOUND"
    assert error.domain == "customersegment.emporix.example"
    assert error.metadata.get("resourceType")


async def test_segment_methods(client: CustomerSegmentsClient, tenant: str, gold: str) -> None:
    from datetime import UTC, datetime

    start = datetime(2030, 1, 1, tzinfo=UTC)
    created = await client.create_segment(
        tenant,
        segment_id="silver",
        name={"en": "Silver"},
        site_code="main",
        description={"en": "Second"},
        valid_from=start,
        mixins={"rank": BIG},
    )
    assert created.status is SegmentStatus.INACTIVE
    assert (created.valid_from, created.valid_to) == (start, None)
    assert created.mixins == {"rank": BIG} and created.description == {"en": "Second"}
    with pytest.raises(AlreadyExists):
        await client.create_segment(tenant, segment_id="silver", name={"en": "x"}, site_code="main")
    generated = await client.create_segment(tenant, name={"en": "No id"}, site_code="main")
    assert generated.id

    upserted = await client.upsert_segment(
        tenant, "silver", name={"en": "Silver 2"}, site_code="main", status=SegmentStatus.ACTIVE
    )
    assert not upserted.created and upserted.segment.name == {"en": "Silver 2"}
    assert upserted.segment.metadata is not None and upserted.segment.metadata.version == 2
    fresh = await client.upsert_segment(tenant, "bronze", name={"en": "Bronze"}, site_code="b2b")
    assert fresh.created

    patched = await client.patch_segment(
        tenant,
        "silver",
        [
            {"op": "replace", "path": "/name/en", "value": "Argent"},
            PatchOperation("add", "/mixins/tags", ["x", 1]),
        ],
    )
    assert patched.name == {"en": "Argent"} and patched.mixins["tags"] == ["x", 1]
    assert (await client.get_segment(tenant, "silver")) == patched

    listed = await client.list_segments(
        tenant, q="siteCode:main", sort="id", include_total_count=True
    )
    assert (
        listed.total_count == 3
        and [s.id for s in listed.segments][:2] == sorted([s.id for s in listed.segments])[:2]
    )
    await client.upsert_assignment(tenant, "silver", "c9")
    of_customer = await client.list_segments(tenant, customer_id="c9")
    assert [s.id for s in of_customer.segments] == ["silver"]

    with pytest.raises(FailedPrecondition):
        await client.delete_segment(tenant, "silver")
    await client.delete_segment(tenant, "silver", force=True)
    with pytest.raises(NotFound):
        await client.get_segment(tenant, "silver")


async def test_invalid_argument_names_the_field(
    client: CustomerSegmentsClient, tenant: str, gold: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await client.list_assignments(tenant, gold, q="customerId:(")
    assert [v.field for v in raised.value.field_violations] == ["q"]
    assert raised.value.field_violations[0].description
    with pytest.raises(InvalidArgument) as raised:
        await client.upsert_assignment(tenant, gold, "")
    assert [v.field for v in raised.value.field_violations] == ["customer_id"]


async def test_unary_bulk(client: CustomerSegmentsClient, tenant: str, gold: str) -> None:
    items = [BulkUpsertItem("b1", mixins={"n": 1}), BulkUpsertItem(""), BulkUpsertItem("b2", "le")]
    results = [r async for r in client.bulk_upsert_assignments(tenant, gold, items)]
    assert [(r.index, r.code, r.ok) for r in results] == [
        (1, 201, True),
        (2, 400, False),
        (3, 201, True),
    ]
    assert results[1].message and results[2].legal_entity_id == "le"
    assert [(r.reason, r.field) for r in results] == [
        ("", ""),
        ("INVALID_ARGUMENT", "customer_id"),
        ("", ""),
    ]
    removed = [
        r
        async for r in client.bulk_remove_assignments(
            tenant, gold, [BulkRemoveItem("b1"), BulkRemoveItem("b2", "le")]
        )
    ]
    assert [r.code for r in removed] == [204, 204]
    assert (await client.list_assignments(tenant, gold)).assignments == ()


async def test_segment_bulk(client: CustomerSegmentsClient, tenant: str) -> None:
    fields: SegmentFields = {"name": {"en": "Bulk"}, "site_code": "main"}
    created = [
        r
        async for r in client.bulk_create_segments(
            tenant,
            [
                BulkSegmentItem("b1", fields),
                BulkSegmentItem("b1", fields),
                BulkSegmentItem("", fields),
                BulkSegmentItem("b2", {"name": {}, "site_code": "main"}),
            ],
        )
    ]
    assert [(r.index, r.code) for r in created] == [(1, 201), (2, 409), (3, 201), (4, 400)]
    assert created[0].segment_id == "b1" and created[2].segment_id not in ("", "b1")
    assert "name" in created[3].message
    assert [(r.reason, r.field) for r in created] == [
        ("", ""),
        ("SEGMENT_ALREADY_EXISTS", ""),
        ("", ""),
        ("INVALID_ARGUMENT", "segment.name"),
    ]
    upserted = [
        r
        async for r in client.bulk_upsert_segments(
            tenant,
            [
                BulkSegmentItem("b1", fields, version=1),
                BulkSegmentItem("b1", fields, version=1),
                BulkSegmentItem("b3", fields),
            ],
        )
    ]
    assert [r.code for r in upserted] == [204, 409, 201]
    assert (await client.get_segment(tenant, "b1")).metadata is not None
    deleted = [r async for r in client.bulk_delete_segments(tenant, ["b1", "b3", "nope"])]
    assert [(r.code, r.segment_id) for r in deleted] == [(204, "b1"), (204, "b3"), (404, "nope")]
    with pytest.raises(NotFound):
        await client.get_segment(tenant, "b1")


async def test_streaming_bulk_of_ten_thousand_items(
    client: CustomerSegmentsClient, tenant: str, gold: str
) -> None:
    total = 10_000
    first_result = asyncio.Event()
    produced = 0

    async def items() -> AsyncIterator[BulkUpsertItem]:
        nonlocal produced
        for n in range(total):
            if n == 1_000:
                # Goes on only once a result came back: a client that read the whole input
                # before sending, or held results back until the end, never gets past here
                # (and fails on its deadline).
                await first_result.wait()
            produced += 1
            yield BulkUpsertItem(f"s-{n:05}", mixins={"n": n})

    codes: dict[int, int] = {}
    async for result in client.stream_upsert_assignments(tenant, gold, items(), timeout=120):
        first_result.set()
        codes[result.index] = result.code
    assert produced == total
    assert sorted(codes) == list(range(1, total + 1))
    assert set(codes.values()) == {201}
    page = await client.list_assignments(tenant, gold, include_total_count=True, page_size=1)
    assert page.total_count == total

    def keys() -> Iterator[BulkRemoveItem]:
        for n in range(total):
            yield BulkRemoveItem(f"s-{n:05}")

    removed = [
        r.code async for r in client.stream_remove_assignments(tenant, gold, keys(), timeout=120)
    ]
    assert len(removed) == total and set(removed) == {204}
    assert (await client.list_assignments(tenant, gold, include_total_count=True)).total_count == 0


async def test_streaming_bulk_of_nothing(
    client: CustomerSegmentsClient, tenant: str, gold: str
) -> None:
    assert [r async for r in client.stream_upsert_assignments(tenant, gold, [])] == []


async def test_token_provider_is_asked_on_every_call(grpc_server: GrpcServer, tenant: str) -> None:
    asked: list[str] = []

    def sync_provider() -> str:
        asked.append("sync")
        return token(tenant)

    async def async_provider() -> str:
        asked.append("async")
        return token(tenant)

    target = f"127.0.0.1:{grpc_server.port}"
    async with CustomerSegmentsClient(target, token_provider=sync_provider) as client:
        await client.create_segment(tenant, segment_id="s", name={"en": "S"}, site_code="main")
        await client.get_segment(tenant, "s")
    async with CustomerSegmentsClient(target, token_provider=async_provider) as client:
        await client.get_segment(tenant, "s")
        assert [
            r async for r in client.stream_upsert_assignments(tenant, "s", [BulkUpsertItem("c")])
        ]
    assert asked == ["sync", "sync", "async", "async"]


async def test_missing_and_insufficient_tokens(grpc_server: GrpcServer, tenant: str) -> None:
    target = f"127.0.0.1:{grpc_server.port}"
    async with CustomerSegmentsClient(target) as client:
        with pytest.raises(Unauthenticated) as raised:
            await client.get_segment(tenant, "s")
        assert raised.value.reason
    reader = token(tenant, "customersegment.segment_read")
    async with CustomerSegmentsClient(target, token=reader) as client:
        with pytest.raises(PermissionDenied):
            await client.create_segment(tenant, segment_id="s", name={"en": "S"}, site_code="main")


def test_token_and_provider_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        CustomerSegmentsClient("127.0.0.1:1", token="a", token_provider=lambda: "b")
