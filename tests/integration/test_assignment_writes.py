"""Write semantics of SPEC.md over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

import grpc
from customersegment.v1 import assignment_pb2 as pb

from tests.conftest import Stubs
from tests.helpers import expect_error, loads

# Integers stay integers, large integers keep every digit; unicode, nesting and nulls survive.
EXACT_MIXINS = (
    '{"count":20,"price":20.5,"big":123456789012345678901234567890,"neg":-9007199254740993,'
    '"text":"Grüße 👋 \\"quoted\\"","nested":{"list":[1,2.0,null,true,{"deep":[]}]},"none":null,'
    '"empty":{}}'
)


def upsert(
    tenant: str, segment_id: str, customer_id: str, **fields: object
) -> pb.UpsertAssignmentRequest:
    return pb.UpsertAssignmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        customer_id=customer_id,
        **fields,  # type: ignore[arg-type]
    )


def get(
    tenant: str, segment_id: str, customer_id: str, legal_entity_id: str = ""
) -> pb.GetAssignmentRequest:
    return pb.GetAssignmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        customer_id=customer_id,
        legal_entity_id=legal_entity_id,
    )


async def test_upsert_creates_then_updates_with_versions(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    first = await stubs.assignments.UpsertAssignment(upsert(tenant, segment_id, "c1"))
    assert first.created is True
    assert first.assignment.metadata.version == 1
    assert first.assignment.assignment_type == pb.ASSIGNMENT_TYPE_MANUAL
    second = await stubs.assignments.UpsertAssignment(
        upsert(tenant, segment_id, "c1", mixins_json='{"a":1}')
    )
    assert second.created is False
    assert second.assignment.metadata.version == 2
    assert second.assignment.metadata.created_at == first.assignment.metadata.created_at
    assert (
        second.assignment.metadata.modified_at.ToDatetime()
        >= first.assignment.metadata.modified_at.ToDatetime()
    )
    got = (await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1"))).assignment
    assert got.metadata.version == 2
    assert loads(got.mixins_json) == {"a": 1}


async def test_mixins_round_trip_exactly(stubs: Stubs, tenant: str, segment_id: str) -> None:
    metadata_mixins = '{"segmentAttributes":"https://res.cloudinary.com/schema.json"}'
    await stubs.assignments.UpsertAssignment(
        upsert(
            tenant, segment_id, "c1", mixins_json=EXACT_MIXINS, metadata_mixins_json=metadata_mixins
        )
    )
    got = (await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1"))).assignment
    assert loads(got.mixins_json) == loads(EXACT_MIXINS)
    stored = loads(got.mixins_json)
    assert type(stored["count"]) is int and stored["count"] == 20
    assert stored["big"] == 123456789012345678901234567890
    assert stored["neg"] == -9007199254740993
    assert type(stored["nested"]["list"][1]) is float
    assert '"count":20,' in got.mixins_json or '"count": 20,' in got.mixins_json
    assert loads(got.metadata.mixins_json) == loads(metadata_mixins)


async def test_put_replaces_mixins_as_a_whole(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await stubs.assignments.UpsertAssignment(
        upsert(
            tenant,
            segment_id,
            "c1",
            mixins_json='{"a":1,"b":{"c":2}}',
            metadata_mixins_json='{"m":"u"}',
        )
    )
    await stubs.assignments.UpsertAssignment(
        upsert(tenant, segment_id, "c1", mixins_json='{"b":{"d":3}}')
    )
    got = (await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1"))).assignment
    assert loads(got.mixins_json) == {"b": {"d": 3}}
    assert loads(got.metadata.mixins_json) == {}


async def test_b2c_and_b2b_of_one_customer_are_different(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    b2c = await stubs.assignments.UpsertAssignment(
        upsert(tenant, segment_id, "c1", mixins_json='{"k":"b2c"}')
    )
    b2b = await stubs.assignments.UpsertAssignment(
        upsert(tenant, segment_id, "c1", legal_entity_id="le1", mixins_json='{"k":"b2b"}')
    )
    assert b2c.created and b2b.created
    got_b2c = (await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1"))).assignment
    got_b2b = (
        await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1", "le1"))
    ).assignment
    assert not got_b2c.HasField("legal_entity")
    assert got_b2b.legal_entity.id == "le1"
    assert loads(got_b2c.mixins_json) == {"k": "b2c"}
    assert loads(got_b2b.mixins_json) == {"k": "b2b"}
    await stubs.assignments.RemoveAssignment(
        pb.RemoveAssignmentRequest(
            tenant=tenant, segment_id=segment_id, customer_id="c1", legal_entity_id="le1"
        )
    )
    await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1"))  # B2C untouched
    await expect_error(
        stubs.assignments.GetAssignment(get(tenant, segment_id, "c1", "le1")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_optimistic_locking(stubs: Stubs, tenant: str, segment_id: str) -> None:
    # A version given for an assignment that does not exist yet: it is created.
    created = await stubs.assignments.UpsertAssignment(upsert(tenant, segment_id, "c1", version=7))
    assert created.created and created.assignment.metadata.version == 1
    await expect_error(
        stubs.assignments.UpsertAssignment(
            upsert(tenant, segment_id, "c1", version=2, mixins_json='{"x":1}')
        ),
        grpc.StatusCode.ABORTED,
        "The resource you are attempting to access has changed.",
    )
    unchanged = (await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1"))).assignment
    assert unchanged.metadata.version == 1 and loads(unchanged.mixins_json) == {}
    updated = await stubs.assignments.UpsertAssignment(
        upsert(tenant, segment_id, "c1", version=1, mixins_json='{"x":1}')
    )
    assert not updated.created and updated.assignment.metadata.version == 2
    # Without a version the write is unconditional.
    forced = await stubs.assignments.UpsertAssignment(upsert(tenant, segment_id, "c1"))
    assert forced.assignment.metadata.version == 3


async def test_remove_is_idempotent(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await stubs.assignments.UpsertAssignment(upsert(tenant, segment_id, "c1"))
    remove = pb.RemoveAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id="c1")
    await stubs.assignments.RemoveAssignment(remove)
    await stubs.assignments.RemoveAssignment(remove)
    await expect_error(
        stubs.assignments.GetAssignment(get(tenant, segment_id, "c1")),
        grpc.StatusCode.NOT_FOUND,
        "customer assignment",
        "c1",
    )
    recreated = await stubs.assignments.UpsertAssignment(upsert(tenant, segment_id, "c1"))
    assert recreated.created and recreated.assignment.metadata.version == 1


async def test_every_call_on_an_unknown_segment_is_not_found(stubs: Stubs, tenant: str) -> None:
    calls: list[Awaitable[object]] = [
        stubs.assignments.GetAssignment(get(tenant, "nosuch", "c1")),
        stubs.assignments.UpsertAssignment(upsert(tenant, "nosuch", "c1")),
        stubs.assignments.RemoveAssignment(
            pb.RemoveAssignmentRequest(tenant=tenant, segment_id="nosuch", customer_id="c1")
        ),
        stubs.assignments.ListAssignments(
            pb.ListAssignmentsRequest(tenant=tenant, segment_id="nosuch")
        ),
    ]
    for call in calls:
        await expect_error(call, grpc.StatusCode.NOT_FOUND, "segment with id nosuch")
    stream = stubs.assignments.BulkUpsertAssignments(
        pb.BulkUpsertAssignmentsRequest(
            tenant=tenant, segment_id="nosuch", items=[pb.BulkUpsertItem(customer_id="c")]
        )
    )
    with_stream = _drain(stream)
    await expect_error(with_stream, grpc.StatusCode.NOT_FOUND, "segment with id nosuch")


async def _drain(stream: object) -> list[object]:
    return [message async for message in stream]  # type: ignore[attr-defined]


async def test_tenants_never_see_each_other(stubs: Stubs, tenant: str, segment_id: str) -> None:
    await stubs.assignments.UpsertAssignment(upsert(tenant, segment_id, "c1"))
    other = "x" + tenant[1:]
    await expect_error(
        stubs.assignments.GetAssignment(get(other, segment_id, "c1")), grpc.StatusCode.NOT_FOUND
    )


async def test_concurrent_upserts_of_one_key(stubs: Stubs, tenant: str, segment_id: str) -> None:
    """Exactly one reports created; versions never skip or repeat."""
    count = 25
    outcomes = await asyncio.gather(
        *(
            stubs.assignments.UpsertAssignment(
                upsert(tenant, segment_id, "hot", mixins_json=json.dumps({"n": n}))
            )
            for n in range(count)
        )
    )
    assert sum(outcome.created for outcome in outcomes) == 1
    versions = sorted(outcome.assignment.metadata.version for outcome in outcomes)
    assert versions == list(range(1, count + 1))
    final = (await stubs.assignments.GetAssignment(get(tenant, segment_id, "hot"))).assignment
    assert final.metadata.version == count


async def test_concurrent_upserts_of_many_keys(stubs: Stubs, tenant: str, segment_id: str) -> None:
    outcomes = await asyncio.gather(
        *(
            stubs.assignments.UpsertAssignment(upsert(tenant, segment_id, f"c{n % 5}"))
            for n in range(30)
        )
    )
    assert sum(outcome.created for outcome in outcomes) == 5
    for key in range(5):
        versions = sorted(
            o.assignment.metadata.version for o in outcomes if o.assignment.customer.id == f"c{key}"
        )
        assert versions == list(range(1, 7))


async def test_directory_names_enrich_assignments(
    stubs: Stubs, tenant: str, segment_id: str
) -> None:
    from customersegment.v1 import directory_pb2

    await stubs.assignments.UpsertAssignment(
        upsert(tenant, segment_id, "c1", legal_entity_id="le1")
    )
    unknown = (
        await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1", "le1"))
    ).assignment
    assert (
        unknown.customer.id == "c1"
        and unknown.customer.first_name == ""
        and unknown.legal_entity.name == ""
    )
    await stubs.directory.UpsertCustomer(
        directory_pb2.UpsertCustomerRequest(
            tenant=tenant,
            customer_id="c1",
            first_name="John",
            last_name="Doe",
            email="john@example.com",
        )
    )
    await stubs.directory.UpsertLegalEntity(
        directory_pb2.UpsertLegalEntityRequest(
            tenant=tenant, legal_entity_id="le1", name="SomeCompany"
        )
    )
    known = (await stubs.assignments.GetAssignment(get(tenant, segment_id, "c1", "le1"))).assignment
    assert (known.customer.first_name, known.customer.last_name, known.customer.email) == (
        "John",
        "Doe",
        "john@example.com",
    )
    assert known.legal_entity.name == "SomeCompany"


async def test_directory_texts_with_control_characters_are_refused(
    stubs: Stubs, tenant: str
) -> None:
    """PostgreSQL refuses NUL in text (it was INTERNAL there, accepted on SQLite): both
    databases refuse control characters in names and e-mails, naming the field."""
    from customersegment.v1 import directory_pb2

    from tests.helpers import field_violations

    for field in ("first_name", "last_name", "email"):
        request = directory_pb2.UpsertCustomerRequest(tenant=tenant, customer_id="c1")
        setattr(request, field, "a\x00b")
        error = await expect_error(
            stubs.directory.UpsertCustomer(request), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert field_violations(error) == [field]
    error = await expect_error(
        stubs.directory.UpsertLegalEntity(
            directory_pb2.UpsertLegalEntityRequest(
                tenant=tenant, legal_entity_id="le1", name="line\nbreak"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(error) == ["name"]
