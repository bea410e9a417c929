"""Text sorts, cursors and comparisons are by code point on both databases, whatever the
PostgreSQL database's default collation is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2
from sqlalchemy import text

from customer_segments.store.database import Database
from tests.conftest import Stubs, fresh_postgres_database, service_on

IDS = ["a", "B", "_x", "ä", "Z9", "b", "é", "A1", "~", "-q"]
TENANT = "acme"
# A default collation that orders text unlike code points ("_x" < "a" < "ä" < "B"): ICU en-US
# (PostgreSQL 15+).
ICU_DATABASE = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql-icu"], loop_scope="session")
async def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stubs]:
    """A service holding IDS as customer ids of segment "s", with mixins {"name": id}."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("collation") / "c.db"
        async with service_on(Database(f"sqlite:///{path}")) as service:
            await _seed(service.stubs)
            yield service.stubs
        return
    with fresh_postgres_database("cs_icu", ICU_DATABASE) as url:
        await _require_non_code_point_default(url)
        async with service_on(Database(url)) as service:
            await _seed(service.stubs)
            await _check_indexes_serve_the_sort(service.store.database)
            yield service.stubs


async def _require_non_code_point_default(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        order = await connection.fetchval(
            "SELECT string_agg(x, ' ' ORDER BY x) FROM unnest($1::text[]) x", IDS
        )
    finally:
        await connection.close()
    assert order.split(" ") != sorted(IDS), "the database's default collation is by code point"


async def _seed(stubs: Stubs) -> None:
    await stubs.segments.CreateSegment(
        segment_pb2.CreateSegmentRequest(
            tenant=TENANT, segment=segment_pb2.Segment(id="s", name={"en": "S"}, site_code="m")
        )
    )
    items = [pb.BulkUpsertItem(customer_id=i, mixins_json=f'{{"name": "{i}"}}') for i in IDS]
    request = pb.BulkUpsertAssignmentsRequest(tenant=TENANT, segment_id="s", items=items)
    async for _ in stubs.assignments.BulkUpsertAssignments(request):
        pass


async def _check_indexes_serve_the_sort(database: Database) -> None:
    """With sorts priced out, a plan still sorts only if no index gives the order."""
    async with database.engine.connect() as connection:
        await connection.execute(text("SET enable_sort = off"))
        await connection.execute(text("SET enable_seqscan = off"))
        plan = await connection.execute(
            text(
                "EXPLAIN SELECT customer_id FROM customer_assignments "
                "WHERE tenant = :t AND segment_id = :s AND (customer_id, legal_entity_id) > "
                "(:c, '') ORDER BY customer_id, legal_entity_id LIMIT 3"
            ),
            {"t": TENANT, "s": "s", "c": "B"},
        )
        lines = [row[0] for row in plan]
    assert not any("Sort" in line for line in lines), lines


async def _ids(stubs: Stubs, **fields: object) -> list[str]:
    page = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=TENANT, segment_id="s", page_size=100, **fields)  # type: ignore[arg-type]
    )
    return [assignment.customer.id for assignment in page.assignments]


async def test_sort_is_by_code_point(service: Stubs) -> None:
    assert await _ids(service) == sorted(IDS)
    assert await _ids(service, sort="customerId:desc") == sorted(IDS, reverse=True)


async def test_cursor_pages_follow_code_points(service: Stubs) -> None:
    for sort, expected in [("", sorted(IDS)), ("customerId:desc", sorted(IDS, reverse=True))]:
        seen: list[str] = []
        token = ""
        while True:
            page = await service.assignments.ListAssignments(
                pb.ListAssignmentsRequest(
                    tenant=TENANT, segment_id="s", page_size=3, sort=sort, page_token=token
                )
            )
            seen += [assignment.customer.id for assignment in page.assignments]
            token = page.next_page_token
            if not token:
                break
        assert seen == expected


@pytest.mark.parametrize("field", ["customerId", "mixins.name"])
async def test_text_comparisons_are_by_code_point(service: Stubs, field: str) -> None:
    assert await _ids(service, q=f"{field}:>Z9") == sorted(i for i in IDS if i > "Z9")
    assert await _ids(service, q=f'{field}:(>="_x" AND <b)') == sorted(
        i for i in IDS if "_x" <= i < "b"
    )
