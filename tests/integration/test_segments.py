"""SegmentService over real gRPC on both databases."""

from __future__ import annotations

import asyncio

import grpc
from customersegment.v1 import assignment_pb2 as apb
from customersegment.v1 import segment_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from customer_segments.domain.assignment import AssignmentKey, AssignmentWrite
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store
from tests.conftest import Stubs
from tests.helpers import expect_error, field_violations, loads


def segment(**fields: object) -> pb.Segment:
    values: dict[str, object] = {
        "name": {"en": "Golden Segment", "de": "Goldenes Segment"},
        "site_code": "main",
    }
    values.update(fields)
    return pb.Segment(**values)  # type: ignore[arg-type]


async def test_create_get_and_generated_id(stubs: Stubs, tenant: str) -> None:
    created = (
        await stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(tenant=tenant, segment=segment())
        )
    ).segment
    assert len(created.id) == 24
    assert created.status == pb.SEGMENT_STATUS_INACTIVE  # default
    assert created.metadata.version == 1
    got = (
        await stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id=created.id))
    ).segment
    assert got == created


async def test_create_keeps_validity_and_mixins(stubs: Stubs, tenant: str) -> None:
    validity = pb.Validity(
        start_time=Timestamp(seconds=1713340800),
        end_time=Timestamp(seconds=1744876800, nanos=123000000),
    )
    created = (
        await stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(
                tenant=tenant,
                segment=segment(
                    id="s1",
                    validity=validity,
                    status=pb.SEGMENT_STATUS_ACTIVE,
                    mixins_json='{"tier":3,"big":12345678901234567890}',
                ),
            )
        )
    ).segment
    assert created.validity == validity
    assert loads(created.mixins_json) == {"tier": 3, "big": 12345678901234567890}


async def test_create_twice_already_exists(stubs: Stubs, tenant: str) -> None:
    await stubs.segments.CreateSegment(
        pb.CreateSegmentRequest(tenant=tenant, segment=segment(id="s1"))
    )
    await expect_error(
        stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(tenant=tenant, segment=segment(id="s1"))
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "already exists",
    )


async def test_upsert_created_updated_and_version_conflict(stubs: Stubs, tenant: str) -> None:
    first = await stubs.segments.UpsertSegment(
        pb.UpsertSegmentRequest(tenant=tenant, segment_id="s1", segment=segment())
    )
    assert first.created and first.segment.id == "s1"
    second = await stubs.segments.UpsertSegment(
        pb.UpsertSegmentRequest(
            tenant=tenant,
            segment_id="s1",
            segment=segment(status=pb.SEGMENT_STATUS_ACTIVE),
            version=1,
        )
    )
    assert (
        not second.created
        and second.segment.metadata.version == 2
        and second.segment.status == pb.SEGMENT_STATUS_ACTIVE
    )
    await expect_error(
        stubs.segments.UpsertSegment(
            pb.UpsertSegmentRequest(tenant=tenant, segment_id="s1", segment=segment(), version=1)
        ),
        grpc.StatusCode.ABORTED,
        "has changed",
    )


async def test_list_with_total_and_sort(stubs: Stubs, tenant: str) -> None:
    for segment_id in ("b", "a", "c"):
        await stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(tenant=tenant, segment=segment(id=segment_id))
        )
    page = await stubs.segments.ListSegments(
        pb.ListSegmentsRequest(tenant=tenant, sort="id:desc", include_total_count=True, page_size=2)
    )
    assert [s.id for s in page.segments] == ["c", "b"] and page.total_count == 3


async def test_delete_needs_force_when_assignments_exist(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    await stubs.assignments.UpsertAssignment(
        apb.UpsertAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="c1")
    )
    await expect_error(
        stubs.segments.DeleteSegment(pb.DeleteSegmentRequest(tenant=tenant, segment_id=segment_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "force",
    )
    await stubs.assignments.GetAssignment(
        apb.GetAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="c1")
    )
    await stubs.segments.DeleteSegment(
        pb.DeleteSegmentRequest(tenant=tenant, segment_id=segment_id, force=True)
    )
    await expect_error(
        stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id=segment_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    # Re-created, the segment starts empty: the force delete took the assignments with it.
    await stubs.segments.CreateSegment(
        pb.CreateSegmentRequest(tenant=tenant, segment=segment(id=segment_id))
    )
    listed = await stubs.assignments.ListAssignments(
        apb.ListAssignmentsRequest(tenant=tenant, segment_id=segment_id)
    )
    assert list(listed.assignments) == []


async def test_delete_unknown_segment_is_not_found(stubs: Stubs, tenant: str) -> None:
    await expect_error(
        stubs.segments.DeleteSegment(pb.DeleteSegmentRequest(tenant=tenant, segment_id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "nope",
    )


async def test_list_by_q_and_by_customer(stubs: Stubs, tenant: str) -> None:
    for segment_id, status in (
        ("s1", pb.SEGMENT_STATUS_ACTIVE),
        ("s2", pb.SEGMENT_STATUS_INACTIVE),
        ("s3", pb.SEGMENT_STATUS_ACTIVE),
    ):
        await stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(tenant=tenant, segment=segment(id=segment_id, status=status))
        )
    for segment_id, customer_id, legal_entity_id in (
        ("s1", "c1", ""),
        ("s2", "c1", "le1"),
        ("s3", "c2", ""),
    ):
        await stubs.assignments.UpsertAssignment(
            apb.UpsertAssignmentRequest(
                tenant=tenant,
                segment_id=segment_id,
                customer_id=customer_id,
                legal_entity_id=legal_entity_id,
            )
        )

    async def ids(**fields: object) -> list[str]:
        page = await stubs.segments.ListSegments(pb.ListSegmentsRequest(tenant=tenant, **fields))  # type: ignore[arg-type]
        return [s.id for s in page.segments]

    assert await ids(q="status:ACTIVE") == ["s1", "s3"]
    assert await ids(q="status:ACTIVE id:s3") == ["s3"]
    assert await ids(customer_id="c1") == ["s1", "s2"]
    assert await ids(customer_id="c1", legal_entity_id="le1") == ["s2"]
    assert await ids(customer_id="c1", q="status:ACTIVE") == ["s1"]
    assert await ids(customer_id="nobody") == []
    await expect_error(
        stubs.segments.ListSegments(pb.ListSegmentsRequest(tenant=tenant, legal_entity_id="le1")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "customer_id",
    )
    await expect_error(
        stubs.segments.ListSegments(pb.ListSegmentsRequest(tenant=tenant, q="name:x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "q",
    )


def patch(
    tenant: str, segment_id: str, *operations: tuple[str, str, str]
) -> pb.PatchSegmentRequest:
    return pb.PatchSegmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        operations=[
            pb.JsonPatchOperation(op=op, path=path, value_json=value)
            for op, path, value in operations
        ],
    )


async def test_patch_applies_every_operation_in_order_and_bumps_the_version(
    stubs: Stubs, tenant: str
) -> None:
    await stubs.segments.CreateSegment(
        pb.CreateSegmentRequest(
            tenant=tenant,
            segment=segment(
                id="s1",
                description={"en": "Old"},
                mixins_json='{"tier":3,"big":12345678901234567890}',
            ),
        )
    )
    patched = (
        await stubs.segments.PatchSegment(
            patch(
                tenant,
                "s1",
                ("replace", "/status", '"ACTIVE"'),
                ("add", "/name/fr", '"Segment doré"'),
                ("remove", "/name/de", ""),
                ("remove", "/description", ""),
                ("add", "/mixins/attributes", '{"price": 10}'),
                ("replace", "/mixins/attributes/price", "15"),
                ("add", "/metadata/mixins/attributes", '"https://example.com/schema.json"'),
                ("add", "/validity/to", '"2030-01-01T00:00:00Z"'),
            )
        )
    ).segment
    assert patched.status == pb.SEGMENT_STATUS_ACTIVE
    assert dict(patched.name) == {"en": "Golden Segment", "fr": "Segment doré"}
    assert dict(patched.description) == {}
    # Untouched values come back exactly: the big integer keeps every digit.
    assert loads(patched.mixins_json) == {
        "tier": 3,
        "big": 12345678901234567890,
        "attributes": {"price": 15},
    }
    assert loads(patched.metadata.mixins_json) == {"attributes": "https://example.com/schema.json"}
    assert patched.validity.end_time.seconds == 1893456000
    assert patched.metadata.version == 2
    got = (
        await stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id="s1"))
    ).segment
    assert got == patched


async def test_patch_is_all_or_nothing_and_names_the_operation(stubs: Stubs, tenant: str) -> None:
    created = (
        await stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(tenant=tenant, segment=segment(id="s1"))
        )
    ).segment
    cases = [
        # (operations, field named, message fragment)
        (
            [("replace", "/status", '"ACTIVE"'), ("replace", "/mixins/no/such", "1")],
            "operations[2].path",
            "does not exist",
        ),
        ([("move", "/status", '"ACTIVE"')], "operations[1].op", "add, remove, replace"),
        ([("replace", "/id", '"other"')], "operations[1].path", "cannot patch"),
        ([("replace", "/metadata", "{}")], "operations[1].path", "cannot patch"),
        ([("replace", "/no/such", "1")], "operations[1].path", "cannot patch"),
        ([("add", "/mixins/x", "{not json")], "operations[1].value_json", "not valid JSON"),
        ([("add", "/mixins/x", "NaN")], "operations[1].value_json", "not valid JSON"),
        ([("remove", "/name", "")], "name", "required"),
        ([("replace", "/status", '"SOMETIMES"')], "status", ""),
        ([("replace", "/siteCode", "7")], "siteCode", ""),
        (
            [
                ("add", "/validity/from", '"2031-01-01T00:00:00Z"'),
                ("add", "/validity/to", '"2030-01-01T00:00:00Z"'),
            ],
            "segment.validity",
            "from must not be after to",
        ),
    ]
    for operations, field, fragment in cases:
        error = await expect_error(
            stubs.segments.PatchSegment(patch(tenant, "s1", *operations)),
            grpc.StatusCode.INVALID_ARGUMENT,
            fragment,
        )
        assert field_violations(error) == [field], operations
    got = (
        await stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id="s1"))
    ).segment
    assert got == created  # nothing was written


async def test_patch_of_a_missing_segment_is_not_found(stubs: Stubs, tenant: str) -> None:
    await expect_error(
        stubs.segments.PatchSegment(patch(tenant, "nosuch", ("replace", "/status", '"ACTIVE"'))),
        grpc.StatusCode.NOT_FOUND,
        "nosuch",
    )


async def test_concurrent_patches_all_apply_one_after_the_other(stubs: Stubs, tenant: str) -> None:
    await stubs.segments.CreateSegment(
        pb.CreateSegmentRequest(tenant=tenant, segment=segment(id="s1"))
    )
    patches = [
        stubs.segments.PatchSegment(patch(tenant, "s1", ("add", f"/mixins/k{n}", str(n))))
        for n in range(8)
    ]
    await asyncio.gather(*patches)  # no ABORTED: none is lost, none is refused
    got = (
        await stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id="s1"))
    ).segment
    assert loads(got.mixins_json) == {f"k{n}": n for n in range(8)}
    assert got.metadata.version == 1 + 8


# An offset can carry an instant out of the years 1 to 9999, which nothing can then hold.
OUT_OF_RANGE_INSTANTS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


async def test_patch_refuses_a_validity_out_of_range_in_utc(stubs: Stubs, tenant: str) -> None:
    created = (
        await stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(tenant=tenant, segment=segment(id="s1"))
        )
    ).segment
    for value in OUT_OF_RANGE_INSTANTS:
        for name in ("from", "to"):
            error = await expect_error(
                stubs.segments.PatchSegment(
                    patch(tenant, "s1", ("add", f"/validity/{name}", f'"{value}"'))
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "year 9999",
            )
            assert field_violations(error) == [f"validity.{name}"]
    got = (
        await stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id="s1"))
    ).segment
    assert got == created


async def test_patch_validity_without_offset_is_utc(stubs: Stubs, tenant: str) -> None:
    # Once a 500: a patched `to` without offset was compared with the stored, aware `from`.
    await stubs.segments.CreateSegment(
        pb.CreateSegmentRequest(tenant=tenant, segment=segment(id="s1"))
    )
    await stubs.segments.PatchSegment(
        patch(tenant, "s1", ("add", "/validity/from", '"2024-01-01T00:00:00+02:00"'))
    )
    patched = (
        await stubs.segments.PatchSegment(
            patch(tenant, "s1", ("add", "/validity/to", '"2024-01-01T00:00:00"'))
        )
    ).segment
    assert patched.validity.start_time.ToJsonString() == "2023-12-31T22:00:00Z"
    assert patched.validity.end_time.ToJsonString() == "2024-01-01T00:00:00Z"


async def test_the_first_and_last_instants_are_kept_and_found(stubs: Stubs, tenant: str) -> None:
    first, last = Timestamp(), Timestamp()
    first.FromJsonString("0001-01-01T00:00:00Z")
    last.FromJsonString("9999-12-31T23:59:59.999Z")
    validity = pb.Validity(start_time=first, end_time=last)
    await stubs.segments.CreateSegment(
        pb.CreateSegmentRequest(tenant=tenant, segment=segment(id="s1", validity=validity))
    )
    got = (
        await stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id="s1"))
    ).segment
    assert got.validity == validity
    for q in (
        'validity.from:<="0001-01-01T00:00:00Z"',
        'validity.to:>="9999-12-31T23:59:59.999Z"',
        "validity.from:(>=0001-01-01T00:00:00Z AND <9999-12-31T23:59:59.999999Z)",
    ):
        found = await stubs.segments.ListSegments(pb.ListSegmentsRequest(tenant=tenant, q=q))
        assert [s.id for s in found.segments] == ["s1"], q
    for q in [f"validity.from:>{value}" for value in OUT_OF_RANGE_INSTANTS] + [
        f'metadata.createdAt:<"{value}"' for value in OUT_OF_RANGE_INSTANTS
    ]:
        error = await expect_error(
            stubs.segments.ListSegments(pb.ListSegmentsRequest(tenant=tenant, q=q)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ISO 8601",
        )
        assert field_violations(error) == ["q"]


async def test_deleting_a_segment_while_its_assignments_are_written(
    store: Store, stubs: Stubs, tenant: str, segment_id: str
) -> None:
    """Each waits for the other instead of failing on the foreign key (it was INTERNAL on
    PostgreSQL): a delete after an uncommitted write sees the assignment, and a write after an
    uncommitted delete finds no segment."""
    write = AssignmentWrite.parse(AssignmentKey.parse(tenant, segment_id, "c1", ""), "", "", None)
    async with store.write() as connection:
        await store.assignments.upsert(connection, write, utc_now())
        delete = asyncio.ensure_future(
            stubs.segments.DeleteSegment(
                pb.DeleteSegmentRequest(tenant=tenant, segment_id=segment_id)
            )
        )
        await asyncio.sleep(0.5)  # the delete reaches the database and waits there
    await expect_error(delete, grpc.StatusCode.FAILED_PRECONDITION, "still has")

    async with store.write() as connection:
        await store.assignments.delete_all_in_segment(connection, tenant, segment_id)
        assert await store.segments.get(connection, tenant, segment_id, lock=True) is not None
        await store.segments.delete(connection, tenant, segment_id)
        upsert = asyncio.ensure_future(
            stubs.assignments.UpsertAssignment(
                apb.UpsertAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="c2")
            )
        )
        await asyncio.sleep(0.5)
    await expect_error(upsert, grpc.StatusCode.NOT_FOUND, segment_id)
