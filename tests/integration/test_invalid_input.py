"""Bad input: INVALID_ARGUMENT naming the field (message and BadRequest detail), never UNKNOWN."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import segment_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from tests.conftest import Stubs
from tests.helpers import expect_error, field_violations, token

OK = {"segment_id": "gold", "customer_id": "c1"}

UPSERTS: list[tuple[dict[str, Any], str]] = [
    ({"tenant": "A"}, "tenant"),
    ({"tenant": "ab"}, "tenant"),
    ({"tenant": "a" * 17}, "tenant"),
    ({"tenant": "1abc"}, "tenant"),
    ({"segment_id": ""}, "segment_id"),
    ({"customer_id": ""}, "customer_id"),
    ({"customer_id": "x" * 256}, "customer_id"),
    ({"customer_id": "tab\there"}, "customer_id"),
    ({"customer_id": " padded"}, "customer_id"),
    ({"legal_entity_id": "y" * 256}, "legal_entity_id"),
    ({"mixins_json": "[1]"}, "mixins_json"),
    ({"mixins_json": "{"}, "mixins_json"),
    ({"mixins_json": '"text"'}, "mixins_json"),
    ({"mixins_json": '{"a": NaN}'}, "mixins_json"),
    ({"mixins_json": '{"a": 1e999}'}, "mixins_json"),
    ({"mixins_json": '{"a": "\\u0000"}'}, "mixins_json"),
    ({"mixins_json": '{"a": "\\ud800"}'}, "mixins_json"),
    ({"mixins_json": "[" * 100_000}, "mixins_json"),
    ({"mixins_json": '{"a":' * 101 + "1" + "}" * 101}, "mixins_json"),
    ({"mixins_json": '{"a":' + "[" * 900 + "]" * 900 + "}"}, "mixins_json"),
    ({"metadata_mixins_json": "1"}, "metadata_mixins_json"),
    ({"version": 0}, "version"),
    ({"version": -3}, "version"),
]


@pytest.mark.parametrize(("override", "field"), UPSERTS)
async def test_bad_upsert_names_the_field(
    stubs: Stubs, tenant: str, segment_id: str, override: dict[str, Any], field: str
) -> None:
    request = pb.UpsertAssignmentRequest(**{"tenant": tenant, **OK, **override})
    error = await expect_error(
        stubs.assignments.UpsertAssignment(request), grpc.StatusCode.INVALID_ARGUMENT, field
    )
    assert field_violations(error) == [field]
    assert "Traceback" not in (error.details() or "")


LISTS: list[tuple[dict[str, Any], str]] = [
    ({"page_size": 1001}, "page_size"),
    ({"page_size": -1}, "page_size"),
    ({"page_number": -1}, "page_number"),
    ({"sort": "nosuchfield"}, "sort"),
    ({"sort": "customerId:sideways"}, "sort"),
    ({"q": "nosuchfield:1"}, "q"),
    ({"q": "customerId"}, "q"),
    ({"q": 'customerId:"unterminated'}, "q"),
    ({"q": "customerId:(a,b"}, "q"),
    ({"q": "customerId:~(a"}, "q"),
    ({"page_token": "not-a-cursor"}, "page_token"),
    ({"fields": FieldMask(paths=["customer.nosuch"])}, "fields"),
]


@pytest.mark.parametrize(("override", "field"), LISTS)
async def test_bad_list_names_the_field(
    stubs: Stubs, tenant: str, segment_id: str, override: dict[str, Any], field: str
) -> None:
    request = pb.ListAssignmentsRequest(**{"tenant": tenant, "segment_id": segment_id, **override})
    error = await expect_error(
        stubs.assignments.ListAssignments(request), grpc.StatusCode.INVALID_ARGUMENT, field
    )
    assert field_violations(error) == [field]


async def test_q_error_points_at_the_position(stubs: Stubs, tenant: str, segment_id: str) -> None:
    request = pb.ListAssignmentsRequest(
        tenant=tenant, segment_id=segment_id, q="customerId:1 bogus:2"
    )
    await expect_error(
        stubs.assignments.ListAssignments(request),
        grpc.StatusCode.INVALID_ARGUMENT,
        "position 14",
        "bogus",
    )


SEGMENTS: list[tuple[dict[str, Any], str]] = [
    ({"name": {}}, "segment.name"),
    ({"name": {"en": ""}}, "segment.name"),
    # PostgreSQL refuses NUL in JSON text (found by the contract suite as a 500).
    ({"name": {"0": "\x00"}}, "segment.name"),
    ({"description": {"en": "a\x00b"}}, "segment.description"),
    ({"site_code": ""}, "segment.site_code"),
    ({"mixins_json": "[]"}, "segment.mixins_json"),
    ({"id": "x" * 256}, "segment.id"),
    (
        {
            "validity": segment_pb2.Validity(
                **{"from": Timestamp(seconds=2_000_000_000), "to": Timestamp(seconds=1_000_000_000)}
            )
        },
        "segment.validity",
    ),
    ({"validity": segment_pb2.Validity(to=Timestamp(seconds=10**13))}, "segment.validity.to"),
]


@pytest.mark.parametrize(("override", "field"), SEGMENTS)
async def test_bad_segment_names_the_field(
    stubs: Stubs, tenant: str, override: dict[str, Any], field: str
) -> None:
    segment = segment_pb2.Segment(**{"name": {"en": "Gold"}, "site_code": "main", **override})
    request = segment_pb2.CreateSegmentRequest(tenant=tenant, segment=segment)
    error = await expect_error(
        stubs.segments.CreateSegment(request), grpc.StatusCode.INVALID_ARGUMENT, field
    )
    assert field_violations(error) == [field]


@pytest.mark.parametrize("character", ["x", "😀"])
async def test_an_echoed_value_never_makes_the_error_too_large(
    stubs: Stubs, http: Any, tenant: str, segment_id: str, character: str
) -> None:
    """Errors quote what the caller sent; the status travels in metadata, which clients cap
    at 8 KiB: a value of 5,000 characters still gets its own error, not RESOURCE_EXHAUSTED."""
    huge = character * 5000
    error = await expect_error(
        stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(tenant=huge, segment_id="gold", customer_id="c1"),
            metadata=[("authorization", f"Bearer {token(tenant)}")],
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert len(error.details() or "") <= 240
    error = await expect_error(
        stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(tenant=tenant, segment_id=segment_id, customer_id=huge)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(error) == ["customer_id"]
    # The gateway reads the details of such an answer too (a bulk call of another tenant).
    answer = await http.put(
        f"/customer-segment/{huge}/segments/gold/customers/bulk",
        json=[{"customerId": "c1"}],
        headers={"Authorization": f"Bearer {token(tenant)}"},
    )
    assert answer.status in (400, 403), await answer.text()
