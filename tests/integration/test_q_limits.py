"""q at its caps reaches SQL on both databases: SQLite refuses an expression tree 1,000 levels
deep, and every condition (each comparison of a range too) must count as one term of it."""

from __future__ import annotations

import grpc
import pytest
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import directory_pb2, segment_pb2

from customer_segments.domain.principal import Scope
from customer_segments.query.parser import MAX_CONDITIONS, MAX_LENGTH, MAX_VALUES
from tests.conftest import Stubs
from tests.helpers import bearer, expect_error, field_violations


def ranged(field: str, comparison: str, count: int) -> str:
    return f"{field}:(" + " AND ".join([comparison] * count) + ")"


def repeated(condition: str, times: int) -> str:
    return " ".join([condition] * times)


def at_most(condition: str) -> int:
    """How many times a condition fits into q, up to the cap."""
    return min(MAX_CONDITIONS, (MAX_LENGTH + 1) // (len(condition) + 1))


# The heaviest shapes that fit into q, each matching the B2B assignment c/le-b alone.
ASSIGNMENT_QUERIES = {
    # Once 500 on SQLite from 500 comparisons: each is `legal_entity_id > ? AND <> ''`.
    "legal entity range": ranged("legalEntityId", ">a", MAX_CONDITIONS),
    "mixins range": ranged("mixins.n", ">1", MAX_CONDITIONS),
    "directory name range": ranged("customer.firstName", ">A", MAX_CONDITIONS),
    # An equality on mixins is a containment test and an exact one.
    "mixins equal": repeated("mixins.t:x", at_most("mixins.t:x")),
    # On PostgreSQL in a transaction of its own, under a statement timeout.
    "mixins regex": repeated("mixins.t:~x", at_most("mixins.t:~x")),
    "mixins any-of with hints": repeated("mixins.n:(2,b,true)", at_most("mixins.n:(2,b,true)")),
    "mixins any-of of every type": "mixins.n:("
    + ",".join(["2", "b", "true", "2.5"] * (MAX_VALUES // 4))
    + ")",
    "mixed": " ".join(
        [
            ranged("legalEntityId", ">a", 300),
            ranged("mixins.n", ">=2", 100),
            repeated("mixins.t:x", 50),
            repeated("mixins.n:(2,3)", 20),
            repeated("legalEntityId:le-b", 5),
            "legalEntityId:exists",
        ]
    ),
}


@pytest.mark.parametrize("name", list(ASSIGNMENT_QUERIES))
async def test_assignment_queries_at_the_caps(
    stubs: Stubs, tenant: str, segment_id: str, name: str
) -> None:
    q = ASSIGNMENT_QUERIES[name]
    assert len(q) <= MAX_LENGTH
    await stubs.directory.UpsertCustomer(
        directory_pb2.UpsertCustomerRequest(tenant=tenant, customer_id="c", first_name="Bea")
    )
    for customer_id, legal_entity_id, mixins in [
        ("a", "", '{"n":1}'),
        ("c", "le-b", '{"n":2,"t":"x"}'),
    ]:
        await stubs.assignments.UpsertAssignment(
            pb.UpsertAssignmentRequest(
                tenant=tenant,
                segment_id=segment_id,
                customer_id=customer_id,
                legal_entity_id=legal_entity_id,
                mixins_json=mixins,
            )
        )
    request = pb.ListAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        q=q,
        page_size=1,
        include_total_count=True,
        sort="metadata.modifiedAt:desc",
    )
    page = await stubs.assignments.ListAssignments(request)
    assert [(a.customer.id, a.legal_entity.id) for a in page.assignments] == [("c", "le-b")]
    assert page.total_count == 1 and not page.next_page_token
    if name != "mixed":
        return
    # The same q beside the conditions of a customer's own view, and a cursor's.
    request.include_total_count = False
    own = bearer(tenant, Scope.READ_OWN.value, sub="c", legal_entity_id="le-b")
    mine = await stubs.assignments.ListAssignments(request, metadata=[("authorization", own)])
    assert [(a.customer.id, a.legal_entity.id) for a in mine.assignments] == [("c", "le-b")]
    search = pb.SearchAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        q=ranged("mixins.n", ">0", MAX_CONDITIONS),  # both rows: c first, then a
        page_size=1,
        sort="metadata.modifiedAt:desc",
    )
    first = await stubs.assignments.SearchAssignments(search)
    search.page_token = first.next_page_token
    second = await stubs.assignments.SearchAssignments(search)
    assert [a.customer.id for a in [*first.assignments, *second.assignments]] == ["c", "a"]


SEGMENT_QUERIES = {
    "id range": ranged("id", ">a", MAX_CONDITIONS),
    "mixins range": ranged("mixins.n", ">1", MAX_CONDITIONS),
    "mixins equal": repeated("mixins.t:x", at_most("mixins.t:x")),
}


@pytest.mark.parametrize("name", list(SEGMENT_QUERIES))
async def test_segment_queries_at_the_caps(stubs: Stubs, tenant: str, name: str) -> None:
    q = SEGMENT_QUERIES[name]
    assert len(q) <= MAX_LENGTH
    for segment_id, site_code, mixins, status in [
        ("a", "a", '{"n":1}', segment_pb2.SEGMENT_STATUS_INACTIVE),
        ("b", "main", '{"n":2,"t":"x"}', segment_pb2.SEGMENT_STATUS_ACTIVE),
    ]:
        await stubs.segments.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                tenant=tenant,
                segment=segment_pb2.Segment(
                    id=segment_id,
                    name={"en": segment_id},
                    site_code=site_code,
                    status=status,
                    mixins_json=mixins,
                ),
            )
        )
    await stubs.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(tenant=tenant, segment_id="b", customer_id="c1")
    )
    request = segment_pb2.ListSegmentsRequest(
        tenant=tenant, q=q, page_size=1, include_total_count=True, sort="siteCode:desc"
    )
    page = await stubs.segments.ListSegments(request)
    assert [s.id for s in page.segments] == ["b"] and page.total_count == 1
    if name != "mixins equal":
        return
    request.customer_id = "c1"  # the segments of a customer: an EXISTS beside the q
    assert [s.id for s in (await stubs.segments.ListSegments(request)).segments] == ["b"]
    own = bearer(tenant, Scope.READ_OWN.value, sub="c1")
    request.customer_id = ""
    mine = await stubs.segments.ListSegments(request, metadata=[("authorization", own)])
    assert [s.id for s in mine.segments] == ["b"]


@pytest.mark.parametrize(
    "q",
    [
        ranged("legalEntityId", ">a", MAX_CONDITIONS + 1),
        ranged("mixins.n", ">1", 300) + " " + ranged("customerId", ">a", 201),
        repeated("mixins.a:x", 100) + " " + ranged("customerId", ">a", 401),
    ],
    ids=["one range", "two ranges", "conditions and a range"],
)
async def test_one_comparison_more_than_the_cap_is_refused(
    stubs: Stubs, tenant: str, segment_id: str, q: str
) -> None:
    assert len(q) <= MAX_LENGTH
    error = await expect_error(
        stubs.assignments.ListAssignments(
            pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id, q=q)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"at most {MAX_CONDITIONS} conditions",
    )
    assert field_violations(error) == ["q"]
