"""Bulk upsert and remove over real gRPC: items independent, results per item, on both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import common_pb2, segment_pb2

from tests.conftest import Stubs
from tests.helpers import admin_metadata, expect_error, loads, next_results


async def results_of(stream: Any) -> list[common_pb2.BulkItemResult]:
    return [result async for message in stream for result in message.results]


def item(customer_id: str, legal_entity_id: str = "", **fields: Any) -> pb.BulkUpsertItem:
    return pb.BulkUpsertItem(customer_id=customer_id, legal_entity_id=legal_entity_id, **fields)


async def test_mixed_bulk_with_duplicates_and_invalid_items(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await stubs.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="existing")
    )
    items = [
        item("a", mixins_json='{"n":1}'),  # 1 created
        item("", mixins_json='{"n":2}'),  # 2 no customer id
        item("a", mixins_json='{"n":3}'),  # 3 same key again: updated, in order
        item("b", mixins_json="[1,2]"),  # 4 mixins not an object
        item("existing"),  # 5 updated
        item("c", "le1", mixins_json='{"n":6}'),  # 6 B2B created
        item("c", mixins_json='{"n":7}'),  # 7 B2C of the same customer: created
        item("a", mixins_json='{"n":8}'),  # 8 third time: updated
        item("d", mixins_json='{"broken":'),  # 9 invalid JSON
        item("existing", version=5),  # 10 stale version: conflict
        item("e", version=3),  # 11 version for a new key: created
        item("x" * 300),  # 12 id too long
    ]
    results = await results_of(
        stubs.assignments.BulkUpsertAssignments(
            pb.BulkUpsertAssignmentsRequest(tenant=tenant, segment_id=segment_id, items=items)
        )
    )
    assert [r.index for r in results] == list(range(1, 13))
    assert [r.code for r in results] == [201, 400, 204, 400, 204, 201, 201, 204, 400, 409, 201, 400]
    statuses = {r.code: r.status for r in results}
    assert statuses == {201: "Created", 204: "No Content", 400: "Bad Request", 409: "Conflict"}
    assert "customer_id" in results[1].message
    assert "mixins_json" in results[3].message and "object" in results[3].message
    assert "mixins_json" in results[8].message
    assert "changed" in results[9].message
    assert "customer_id" in results[11].message
    assert all(not r.message for r in results if r.code in (201, 204))
    assert [(r.index, r.field, r.reason) for r in results if r.code >= 400] == [
        (2, "customer_id", "INVALID_ARGUMENT"),
        (4, "mixins_json", "INVALID_ARGUMENT"),
        (9, "mixins_json", "INVALID_ARGUMENT"),
        (10, "", "VERSION_MISMATCH"),
        (12, "customer_id", "LIMIT_EXCEEDED"),
    ]
    assert (results[3].field_description, results[11].field_description) == (
        "must be a JSON object",
        "must have at most 255 characters",
    )
    assert all(not (r.field or r.field_description or r.reason) for r in results if r.code < 400)

    async def state(customer_id: str, legal_entity_id: str = "") -> pb.Assignment:
        return (
            await stubs.assignments.GetAssignment(
                pb.GetAssignmentRequest(
                    tenant=tenant,
                    segment_id=segment_id,
                    customer_id=customer_id,
                    legal_entity_id=legal_entity_id,
                )
            )
        ).assignment

    a = await state("a")
    assert (a.metadata.version, loads(a.mixins_json)) == (3, {"n": 8})
    assert (await state("existing")).metadata.version == 2
    assert loads((await state("c", "le1")).mixins_json) == {"n": 6}
    assert loads((await state("c")).mixins_json) == {"n": 7}
    assert (await state("e")).metadata.version == 1
    # Failed items left nothing behind.
    for customer_id in ("b", "d"):
        await expect_error(state(customer_id), grpc.StatusCode.NOT_FOUND)
    listed = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id, include_total_count=True)
    )
    assert listed.total_count == 5  # a, existing, c (B2B), c (B2C), e


async def test_thousand_items_in_one_request_stream_a_thousand_results(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    request = pb.BulkUpsertAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        items=[item(f"c{n}", mixins_json=json.dumps({"n": n})) for n in range(1000)],
    )
    messages = [message async for message in stubs.assignments.BulkUpsertAssignments(request)]
    assert len(messages) > 1, "results must stream as chunks are decided, not all at the end"
    results = [result for message in messages for result in message.results]
    assert [r.index for r in results] == list(range(1, 1001))
    assert {r.code for r in results} == {201}
    again = await results_of(stubs.assignments.BulkUpsertAssignments(request))
    assert {r.code for r in again} == {204}
    listed = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(
            tenant=tenant, segment_id=segment_id, include_total_count=True, page_size=1
        )
    )
    assert listed.total_count == 1000


async def test_client_streaming_counts_indexes_across_messages(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    async def messages() -> AsyncIterator[pb.StreamUpsertAssignmentsRequest]:
        yield pb.StreamUpsertAssignmentsRequest(
            tenant=tenant, segment_id=segment_id, items=[item("s1"), item("s2")]
        )
        yield pb.StreamUpsertAssignmentsRequest(items=[item("s3"), item("")])
        yield pb.StreamUpsertAssignmentsRequest(tenant=tenant, items=[item("s1")])

    results = await results_of(
        stubs.assignments.StreamUpsertAssignments(messages(), metadata=admin_metadata(tenant))
    )
    assert [(r.index, r.code) for r in results] == [
        (1, 201),
        (2, 201),
        (3, 201),
        (4, 400),
        (5, 204),
    ]
    assert results[0].customer_id == "s1"


async def test_client_stream_must_keep_its_tenant_and_segment(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    async def messages() -> AsyncIterator[pb.StreamUpsertAssignmentsRequest]:
        yield pb.StreamUpsertAssignmentsRequest(
            tenant=tenant, segment_id=segment_id, items=[item("s1")]
        )
        yield pb.StreamUpsertAssignmentsRequest(segment_id="other", items=[item("s2")])

    await expect_error(
        results_of(
            stubs.assignments.StreamUpsertAssignments(messages(), metadata=admin_metadata(tenant))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "segment_id",
    )


async def test_a_refused_stream_is_refused_while_the_client_still_writes(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    """The refusal, not INTERNAL ("Internal error from Core", which grpc.aio's client reports
    when the call ends under a write): the server reads the rest of a refused stream first."""
    for first_tenant, code in (("other", grpc.StatusCode.PERMISSION_DENIED), (tenant, None)):

        async def messages(first: str = first_tenant) -> AsyncIterator[Any]:
            yield pb.StreamRemoveAssignmentsRequest(tenant=first, segment_id=segment_id)
            # A later message naming another segment is refused mid-stream.
            yield pb.StreamRemoveAssignmentsRequest(
                segment_id="other", items=[pb.BulkRemoveItem(customer_id="c")]
            )
            for _ in range(200):
                yield pb.StreamRemoveAssignmentsRequest(items=[pb.BulkRemoveItem(customer_id="c")])

        await expect_error(
            results_of(
                stubs.assignments.StreamRemoveAssignments(
                    messages(), metadata=admin_metadata(tenant)
                )
            ),
            code or grpc.StatusCode.INVALID_ARGUMENT,
        )

    async def unauthenticated() -> AsyncIterator[Any]:
        for _ in range(12):  # fewer than the 16 a caller without a valid token gets read
            yield pb.StreamRemoveAssignmentsRequest(tenant=tenant, segment_id=segment_id)

    await expect_error(
        results_of(
            stubs.assignments.StreamRemoveAssignments(
                unauthenticated(), metadata=[("authorization", "Bearer expired.or.forged")]
            )
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_segment_deleted_mid_stream_reports_not_found_per_item(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    first_results = []
    call = stubs.assignments.StreamUpsertAssignments(None, metadata=admin_metadata(tenant))
    await call.write(
        pb.StreamUpsertAssignmentsRequest(tenant=tenant, segment_id=segment_id, items=[item("m1")])
    )
    first_results.append(await next_results(call))
    await stubs.segments.DeleteSegment(
        segment_pb2.DeleteSegmentRequest(tenant=tenant, segment_id=segment_id, force=True)
    )
    await call.write(pb.StreamUpsertAssignmentsRequest(items=[item("m2"), item("m3")]))
    await call.done_writing()
    later = await next_results(call)
    assert [r.code for r in first_results[0].results] == [201]
    assert [(r.index, r.code) for r in later.results] == [(2, 404), (3, 404)]
    assert "segment with id gold" in later.results[0].message
    assert {(r.reason, r.field) for r in later.results} == {("SEGMENT_NOT_FOUND", "")}


async def test_bulk_remove(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await results_of(
        stubs.assignments.BulkUpsertAssignments(
            pb.BulkUpsertAssignmentsRequest(
                tenant=tenant,
                segment_id=segment_id,
                items=[item("r1"), item("r2"), item("r2", "le")],
            )
        )
    )
    removal = pb.BulkRemoveAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        items=[
            pb.BulkRemoveItem(customer_id="r1"),
            pb.BulkRemoveItem(customer_id=""),
            pb.BulkRemoveItem(customer_id="never-there"),
            pb.BulkRemoveItem(customer_id="r2", legal_entity_id="le"),
            pb.BulkRemoveItem(customer_id="r1"),
        ],
    )
    results = await results_of(stubs.assignments.BulkRemoveAssignments(removal))
    assert [(r.index, r.code) for r in results] == [
        (1, 204),
        (2, 400),
        (3, 204),
        (4, 204),
        (5, 204),
    ]
    assert "customer_id" in results[1].message
    listed = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id)
    )
    assert [(a.customer.id, a.HasField("legal_entity")) for a in listed.assignments] == [
        ("r2", False)
    ]


async def test_bulk_validates_tenant_and_segment_for_the_whole_call(
    stubs: Stubs, segment_id: str
) -> None:
    await expect_error(
        results_of(
            stubs.assignments.BulkRemoveAssignments(
                pb.BulkRemoveAssignmentsRequest(tenant="Bad!", segment_id=segment_id, items=[])
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tenant",
    )
