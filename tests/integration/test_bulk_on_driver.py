"""A bulk chunk's one statement (upsert_many_alone), run on the driver on PostgreSQL, writes and
answers what the same statement through SQLAlchemy (single_statement) does: rows, versions and
change events; and a database error still reaches the bulk service as an SQLAlchemyError."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from sqlalchemy.exc import SQLAlchemyError

from customer_segments.domain.assignment import AssignmentKey, AssignmentWrite
from customer_segments.domain.segment import SegmentInput
from customer_segments.services.segments import insert_segment
from customer_segments.store.assignments import SEPARATOR, chunk_parameters
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEGMENT_ID = "gold"


def _writes(tenant: str, items: list[tuple[str, str, str]]) -> list[AssignmentWrite]:
    return [
        AssignmentWrite.parse(
            AssignmentKey(tenant, SEGMENT_ID, customer_id, legal_entity_id), mixins, "", None
        )
        for customer_id, legal_entity_id, mixins in items
    ]


# Inserts (B2C and B2B, with and without mixins), then updates of some beside new ones.
CHUNKS = [
    [("a", "", '{"n":1}'), ("b", "le1", ""), ("c", "", '{"deep":{"x":[1,2]}}')],
    [("c", "", '{"n":3}'), ("d", "", ""), ("a", "", "")],
]


async def _new_tenant(store: Store) -> str:
    tenant = f"t{secrets.token_hex(4)}"
    segment = SegmentInput({"en": "G"}, {}, None, None, None, "main", "", "")
    await insert_segment(store, tenant, SEGMENT_ID, segment)
    return tenant


async def _general(store: Store, writes: list[AssignmentWrite], announced: bool) -> Any:
    """The same statement through SQLAlchemy's execution, as before the driver path."""
    async with store.single_statement() as connection:
        if announced:
            return await store.assignments.upsert_many_announced(connection, writes, utc_now())
        return await store.assignments.upsert_many(connection, writes, utc_now())


async def _stored(store: Store, tenant: str) -> tuple[list[Any], list[Any]]:
    """The tenant's assignments and events, without what differs between two tenants."""
    async with store.read() as connection:
        events = await store.events.after(connection, tenant, 0, 100)
        rows = [
            await store.assignments.get(connection, AssignmentKey(tenant, SEGMENT_ID, c, le))
            for c, le in (("a", ""), ("b", "le1"), ("c", ""), ("d", ""))
        ]
    assignments = [
        (row.customer.id, row.legal_entity, row.mixins, row.metadata_mixins, row.version)
        for row in rows
        if row is not None
    ]
    told = [
        (event.sequence, event.type, event.segment_id, _without_moments(event.payload))
        for event in events
    ]
    return assignments, told


def _without_moments(value: Any) -> Any:
    """The payload without its times and tenant, which differ between the two tenants."""
    if isinstance(value, dict):
        return {
            name: _without_moments(child)
            for name, child in value.items()
            if name not in ("createdAt", "modifiedAt", "tenant")
        }
    return value


@pytest.mark.parametrize("announced", [True, False])
async def test_the_driver_path_writes_and_answers_as_the_general_path(
    store: Store, announced: bool
) -> None:
    if announced and not store.assignments.announces_in_sql:
        pytest.skip("the events of a chunk are one statement on PostgreSQL only")
    fast, general = await _new_tenant(store), await _new_tenant(store)
    for chunk in CHUNKS:
        versions = await store.assignments.upsert_many_alone(
            _writes(fast, chunk), utc_now(), announced=announced
        )
        assert versions == await _general(store, _writes(general, chunk), announced)
    assert versions == {("c", ""): 2, ("d", ""): 1, ("a", ""): 2}
    fast_rows, fast_events = await _stored(store, fast)
    general_rows, general_events = await _stored(store, general)
    assert fast_rows == general_rows and len(fast_rows) == 4
    assert fast_events == general_events
    assert len(fast_events) == 1 + (6 if announced else 0)  # the segment's, then the chunks'


@pytest.mark.parametrize("announced", [True, False])
async def test_a_database_error_on_the_driver_path_is_an_sqlalchemy_error(
    store: Store, announced: bool
) -> None:
    """The bulk service retries a rejected chunk item by item when it catches SQLAlchemyError
    (a segment deleted in mid-stream: the foreign key)."""
    if announced and not store.assignments.announces_in_sql:
        pytest.skip("the events of a chunk are one statement on PostgreSQL only")
    tenant = await _new_tenant(store)
    writes = [
        AssignmentWrite.parse(AssignmentKey(tenant, "no-such-segment", "a", ""), "", "", None)
    ]
    with pytest.raises(SQLAlchemyError):
        await store.assignments.upsert_many_alone(writes, utc_now(), announced=announced)
    # The connection went back to the pool in working order.
    ok = await store.assignments.upsert_many_alone(
        _writes(tenant, CHUNKS[0]), utc_now(), announced=announced
    )
    assert set(ok.values()) == {1}


@pytest.mark.parametrize("items", [[("solo", "", "")], [("b2b", "le9", '{"n":1}')]])
async def test_a_chunk_of_one_item_is_one_row(
    store: Store, items: list[tuple[str, str, str]]
) -> None:
    """Each column's values travel joined as one text (store/assignments.py _joined): one item,
    an empty legal entity id too, is still one value of each column."""
    tenant = await _new_tenant(store)
    versions = await store.assignments.upsert_many_alone(
        _writes(tenant, items), utc_now(), announced=store.assignments.announces_in_sql
    )
    customer_id, legal_entity_id, mixins = items[0]
    assert versions == {(customer_id, legal_entity_id): 1}
    async with store.read() as connection:
        key = AssignmentKey(tenant, SEGMENT_ID, customer_id, legal_entity_id)
        stored = await store.assignments.get(connection, key)
    assert stored is not None and stored.mixins == (json.loads(mixins) if mixins else {})


async def test_a_value_holding_the_separator_is_refused() -> None:
    """Validation refuses control characters in ids and JSON; the store does not rely on it."""
    with pytest.raises(ValueError, match="U\\+001F"):
        chunk_parameters("t", "s", utc_now(), ["a\x1fb"], [""], ["{}"], ["{}"])
    joined = chunk_parameters("t", "s", utc_now(), ["a", "b"], ["", "le"], ["{}"] * 2, [""] * 2)
    assert joined["legal_entity_ids"] == f"{SEPARATOR}{SEPARATOR}le"
