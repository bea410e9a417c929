"""ListAssignments: paging, sort with stable ties, field selection, totals and q equality."""

from __future__ import annotations

import grpc
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import directory_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from tests.conftest import Stubs
from tests.helpers import expect_error


async def seed(stubs: Stubs, tenant: str, segment_id: str) -> None:
    items = [
        pb.BulkUpsertItem(customer_id=f"c{n:02d}", legal_entity_id="le1" if n % 3 == 0 else "")
        for n in range(25)
    ]
    async for _ in stubs.assignments.BulkUpsertAssignments(
        pb.BulkUpsertAssignmentsRequest(tenant=tenant, segment_id=segment_id, items=items)
    ):
        pass


def listing(tenant: str, segment_id: str, **fields: object) -> pb.ListAssignmentsRequest:
    return pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id, **fields)  # type: ignore[arg-type]


async def test_pages_cover_everything_once_in_key_order(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await seed(stubs, tenant, segment_id)
    seen = []
    for number in range(1, 5):
        page = await stubs.assignments.ListAssignments(
            listing(tenant, segment_id, page_size=7, page_number=number)
        )
        seen += [(a.customer.id, a.legal_entity.id) for a in page.assignments]
        assert page.total_count == 0  # not asked for
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 25


async def test_default_page_size_and_total(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await seed(stubs, tenant, segment_id)
    page = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, include_total_count=True, page_size=2)
    )
    assert page.total_count == 25 and len(page.assignments) == 2
    everything = await stubs.assignments.ListAssignments(listing(tenant, segment_id))
    assert len(everything.assignments) == 25  # default page size 60


async def test_sort_descending_with_ties_broken_by_key(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await seed(stubs, tenant, segment_id)
    page = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, sort="legalEntityId:DESC,customerId:desc")
    )
    keys = [(a.legal_entity.id, a.customer.id) for a in page.assignments]
    assert keys == sorted(keys, reverse=True)
    by_version = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, sort="metadata.version")
    )
    ids = [a.customer.id for a in by_version.assignments]
    assert ids == sorted(ids)  # all versions equal: the key decides


async def test_sort_by_directory_name_puts_unknown_first(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await seed(stubs, tenant, segment_id)
    for customer_id, last_name in (("c01", "Zeta"), ("c02", "Alpha")):
        await stubs.directory.UpsertCustomer(
            directory_pb2.UpsertCustomerRequest(
                tenant=tenant, customer_id=customer_id, last_name=last_name
            )
        )
    page = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, sort="customer.lastName:asc")
    )
    names = [a.customer.last_name for a in page.assignments]
    assert names[-2:] == ["Alpha", "Zeta"] and set(names[:-2]) == {""}
    page = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, sort="customer.lastName:desc")
    )
    assert [a.customer.last_name for a in page.assignments][:2] == ["Zeta", "Alpha"]


async def test_fields_select_what_comes_back(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await seed(stubs, tenant, segment_id)
    page = await stubs.assignments.ListAssignments(
        listing(
            tenant,
            segment_id,
            page_size=3,
            fields=FieldMask(paths=["customer.id", "metadata.version"]),
        )
    )
    first = page.assignments[0]
    assert first.customer.id == "c00" and first.metadata.version == 1
    assert not first.HasField("legal_entity") and not first.metadata.HasField("created_at")
    assert first.mixins_json == "" and first.segment_id == ""


async def test_q_equality_and_and(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await seed(stubs, tenant, segment_id)
    b2b = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, q="legalEntityId:le1", include_total_count=True)
    )
    assert b2b.total_count == 9 and {a.legal_entity.id for a in b2b.assignments} == {"le1"}
    one = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, q='customer.id:"c03" legalEntity.id:le1')
    )
    assert [a.customer.id for a in one.assignments] == ["c03"]
    none = await stubs.assignments.ListAssignments(
        listing(tenant, segment_id, q="customerId:c03 legalEntityId:other")
    )
    assert list(none.assignments) == []
    versioned = await stubs.assignments.ListAssignments(
        listing(
            tenant,
            segment_id,
            q="metadata.version:1 assignmentType:MANUAL",
            include_total_count=True,
        )
    )
    assert versioned.total_count == 25


async def test_list_of_unknown_segment_is_not_found(stubs: Stubs, tenant: str) -> None:
    await expect_error(
        stubs.assignments.ListAssignments(listing(tenant, "nope")),
        grpc.StatusCode.NOT_FOUND,
        "nope",
    )
