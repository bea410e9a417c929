"""The fast read of "which segments is this customer in?" answers exactly as the general list
path does, on both databases: the same segments in the same order, the same pages, for every
shape of the filter, the customer's own view included.

The general path is the one any other sort takes; `sort="id"` asks for the order the fast path
reads in (by id, the default), so both must agree item for item."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from customersegment.v1 import assignment_pb2 as apb
from customersegment.v1 import segment_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from customer_segments.domain.assignment import AssignmentKey
from customer_segments.domain.listing import Boundary, SortField, Window
from customer_segments.grpc.convert import segment_to_proto
from customer_segments.query.parser import parse_q
from customer_segments.query.syntax import Query
from customer_segments.store.database import utc_now
from customer_segments.store.segments import SEARCHABLE, SegmentFilter
from customer_segments.store.store import Store
from tests.conftest import Stubs
from tests.helpers import bearer

CUSTOMER = "cust-fast"
LEGAL_ENTITY = "le-fast"
READ_OWN = "customersegment.segment_read_own"


def _instant(delta: timedelta) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(utc_now() + delta)
    return stamp


async def _segments_and_assignments(stubs: Stubs, tenant: str) -> None:
    """Seven segments: active, inactive, active but expired, active but not yet valid, each
    with a B2C or a B2B assignment of CUSTOMER (one with both), and one of another customer."""
    day = timedelta(days=1)
    shapes: list[
        tuple[str, pb.SegmentStatus.ValueType, Timestamp | None, Timestamp | None, list[str]]
    ] = [
        ("s-active-b2c", pb.SEGMENT_STATUS_ACTIVE, None, None, [""]),
        (
            "s-active-both",
            pb.SEGMENT_STATUS_ACTIVE,
            _instant(-day),
            _instant(day),
            ["", LEGAL_ENTITY],
        ),
        ("s-active-b2b", pb.SEGMENT_STATUS_ACTIVE, None, None, [LEGAL_ENTITY]),
        ("s-inactive", pb.SEGMENT_STATUS_INACTIVE, None, None, ["", LEGAL_ENTITY]),
        ("s-expired", pb.SEGMENT_STATUS_ACTIVE, _instant(-2 * day), _instant(-day), [""]),
        ("s-future", pb.SEGMENT_STATUS_ACTIVE, _instant(day), None, [LEGAL_ENTITY]),
        ("s-other", pb.SEGMENT_STATUS_ACTIVE, None, None, []),
    ]
    for segment_id, status, valid_from, valid_to, legal_entities in shapes:
        segment = pb.Segment(
            id=segment_id, name={"en": segment_id}, site_code="main", status=status
        )
        if valid_from is not None:
            segment.validity.start_time.CopyFrom(valid_from)
        if valid_to is not None:
            segment.validity.end_time.CopyFrom(valid_to)
        await stubs.segments.CreateSegment(pb.CreateSegmentRequest(tenant=tenant, segment=segment))
        for legal_entity_id in legal_entities:
            await stubs.assignments.UpsertAssignment(
                apb.UpsertAssignmentRequest(
                    tenant=tenant,
                    segment_id=segment_id,
                    customer_id=CUSTOMER,
                    legal_entity_id=legal_entity_id,
                )
            )
        await stubs.assignments.UpsertAssignment(
            apb.UpsertAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="someone")
        )


@pytest.mark.parametrize("legal_entity_id", [None, "", LEGAL_ENTITY, "le-unknown"])
@pytest.mark.parametrize("active", [False, True])
async def test_the_store_reads_the_same_pages_either_way(
    stubs: Stubs, store: Store, tenant: str, legal_entity_id: str | None, active: bool
) -> None:
    await _segments_and_assignments(stubs, tenant)
    segment_filter = SegmentFilter(
        Query(), CUSTOMER, legal_entity_id, utc_now() if active else None
    )
    by_id = [SortField("id", descending=False)]
    windows = [Window(60, 0, None), Window(2, 0, None), Window(2, 2, None), Window(1, 5, None)]
    async with store.read() as connection:
        for window in windows:
            fast = await store.segments.list(connection, tenant, segment_filter, [], window)
            general = await store.segments.list(connection, tenant, segment_filter, by_id, window)
            assert fast == general, window
            # ... and on a connection of its own (ListSegments' path).
            alone = await store.segments.read_of_customer(tenant, segment_filter, [], window)
            assert alone == general, window
    if legal_entity_id is None and not active:  # the filter must have found something to pin
        first = await _first_page(store, tenant, segment_filter)
        assert first == [
            "s-active-b2b",
            "s-active-b2c",
            "s-active-both",
            "s-expired",
            "s-future",
            "s-inactive",
        ]


async def _first_page(store: Store, tenant: str, segment_filter: SegmentFilter) -> list[str]:
    async with store.read() as connection:
        page = await store.segments.list(
            connection, tenant, segment_filter, [], Window(60, 0, None)
        )
    return [segment.id for segment in page.items]


@pytest.mark.parametrize("legal_entity_id", ["", LEGAL_ENTITY])
async def test_the_customers_own_view_is_the_same_either_way(
    stubs: Stubs, tenant: str, legal_entity_id: str
) -> None:
    """A customer token sees its active, valid segments for its legal entity (B2C: its B2C
    ones), by the fast path and by the general one."""
    await _segments_and_assignments(stubs, tenant)
    claims = {"sub": CUSTOMER, "legal_entity_id": legal_entity_id or None}
    metadata = (("authorization", bearer(tenant, READ_OWN, **claims)),)
    answers = {}
    for sort in ("", "id"):
        answer = await stubs.segments.ListSegments(
            pb.ListSegmentsRequest(tenant=tenant, sort=sort, page_size=1), metadata=metadata
        )
        pages = [[segment.id for segment in answer.segments]]
        while answer.next_page_token:
            answer = await stubs.segments.ListSegments(
                pb.ListSegmentsRequest(
                    tenant=tenant, sort=sort, page_size=1, page_token=answer.next_page_token
                ),
                metadata=metadata,
            )
            pages.append([segment.id for segment in answer.segments])
        answers[sort] = pages
    expected = (
        [["s-active-b2c"], ["s-active-both"]]
        if not legal_entity_id
        else [
            ["s-active-b2b"],
            ["s-active-both"],
        ]
    )
    assert answers[""] == answers["id"] == expected


async def test_only_a_first_page_of_a_customers_segments_is_read_on_a_connection_of_its_own(
    stubs: Stubs, store: Store, tenant: str
) -> None:
    """Any other listing (a q, a sort, a cursor, no customer) needs the general path."""
    await _segments_and_assignments(stubs, tenant)
    first = Window(2, 0, None)
    by_id = [SortField("id", descending=False)]
    of_customer = SegmentFilter(Query(), CUSTOMER, None, None)
    assert await store.segments.read_of_customer(tenant, of_customer, [], first) is not None
    for segment_filter, sort, window in [
        (of_customer, by_id, first),
        (of_customer, [], Window(2, 0, Boundary(("s-active-b2c",), False))),
        (SegmentFilter(parse_q("siteCode:main", SEARCHABLE), CUSTOMER, None, None), [], first),
        (SegmentFilter(Query(), "", None, None), [], first),
    ]:
        assert await store.segments.read_of_customer(tenant, segment_filter, sort, window) is None


async def test_list_segments_answers_the_same_with_and_without_a_total(
    stubs: Stubs, tenant: str
) -> None:
    """include_total_count takes the general path (one connection for the page and the count),
    without it the page is read on a connection of its own: the same segments and tokens."""
    await _segments_and_assignments(stubs, tenant)
    for legal_entity_id in ("", LEGAL_ENTITY):
        request = pb.ListSegmentsRequest(
            tenant=tenant, customer_id=CUSTOMER, legal_entity_id=legal_entity_id, page_size=2
        )
        fast = await stubs.segments.ListSegments(request)
        request.include_total_count = True
        general = await stubs.segments.ListSegments(request)
        assert list(fast.segments) == list(general.segments)
        assert fast.next_page_token == general.next_page_token
        assert fast.next_page_token
        assert general.total_count > len(general.segments)


@pytest.mark.parametrize("legal_entity_id", ["", LEGAL_ENTITY, "le-unknown"])
async def test_an_assignment_reads_the_same_on_a_connection_of_its_own(
    stubs: Stubs, store: Store, tenant: str, legal_entity_id: str
) -> None:
    """GetAssignment's read (store.assignments.read) against the read inside a use case's
    connection (store.assignments.get), hits and misses."""
    await _segments_and_assignments(stubs, tenant)
    for segment_id in ("s-active-both", "s-active-b2b", "s-other", "s-none"):
        key = AssignmentKey(tenant, segment_id, CUSTOMER, legal_entity_id)
        async with store.read() as connection:
            general = await store.assignments.get(connection, key)
        assert await store.assignments.read(key) == general, key
    both = AssignmentKey(tenant, "s-active-both", CUSTOMER, legal_entity_id)
    assert (await store.assignments.read(both) is None) == (legal_entity_id == "le-unknown")


async def _listed(stubs: Stubs, tenant: str) -> dict[str, pb.Segment]:
    answer = await stubs.segments.ListSegments(
        pb.ListSegmentsRequest(tenant=tenant, customer_id=CUSTOMER)
    )
    return {segment.id: segment for segment in answer.segments}


async def test_segment_messages_follow_every_write_and_stay_in_their_tenant(
    stubs: Stubs, store: Store, tenant: str
) -> None:
    """The messages ListSegments and GetSegment build once per state of a segment
    (convert.SegmentMessages, and before it the store's SegmentRepository._known_segment for
    the segments of a customer) are those segment_to_proto builds from the row just read, after
    an upsert, a patch, and a delete and create again; a segment of the same id in another
    tenant, written in the same instant, is never answered for this one."""
    other = "t" + secrets.token_hex(7)
    await _segments_and_assignments(stubs, tenant)
    await _segments_and_assignments(stubs, other)

    async def pinned() -> None:
        for each in (tenant, other):
            listed = await _listed(stubs, each)
            assert listed
            async with store.read() as connection:
                for segment_id, message in listed.items():
                    row = await store.segments.get(connection, each, segment_id)
                    assert row is not None
                    assert message == segment_to_proto(row), (each, segment_id)
                    got = await stubs.segments.GetSegment(
                        pb.GetSegmentRequest(tenant=each, segment_id=segment_id)
                    )
                    assert got.segment == message

    await pinned()
    renamed = pb.Segment(name={"en": "renamed"}, site_code="main", status=pb.SEGMENT_STATUS_ACTIVE)
    await stubs.segments.UpsertSegment(
        pb.UpsertSegmentRequest(tenant=tenant, segment_id="s-active-b2c", segment=renamed)
    )
    await stubs.segments.PatchSegment(
        pb.PatchSegmentRequest(
            tenant=tenant,
            segment_id="s-inactive",
            operations=[
                pb.JsonPatchOperation(op="replace", path="/siteCode", value_json='"other"')
            ],
        )
    )
    await pinned()
    listed = await _listed(stubs, tenant)
    assert listed["s-active-b2c"].name == {"en": "renamed"}
    assert listed["s-inactive"].site_code == "other"
    assert (await _listed(stubs, other))["s-active-b2c"].name == {"en": "s-active-b2c"}
    await stubs.segments.DeleteSegment(
        pb.DeleteSegmentRequest(tenant=tenant, segment_id="s-future", force=True)
    )
    recreated = pb.Segment(
        id="s-future", name={"en": "again"}, site_code="main", status=pb.SEGMENT_STATUS_ACTIVE
    )
    await stubs.segments.CreateSegment(pb.CreateSegmentRequest(tenant=tenant, segment=recreated))
    await stubs.assignments.UpsertAssignment(
        apb.UpsertAssignmentRequest(tenant=tenant, segment_id="s-future", customer_id=CUSTOMER)
    )
    await pinned()
    assert (await _listed(stubs, tenant))["s-future"].name == {"en": "again"}
