"""grpc/convert.py's own arithmetic against protobuf's reference conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

from customersegment.v1 import assignment_pb2, common_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from customer_segments.domain.assignment import BulkItemResult
from customer_segments.domain.errors import ITEM_NOT_WRITTEN, InvalidArgument, ItemFailure, Reason
from customer_segments.domain.segment import Segment, SegmentStatus
from customer_segments.grpc.convert import (
    SegmentMessages,
    add_bulk_results,
    segment_to_proto,
    timestamp,
)


def _reference(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


_OFFSETS = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(st.datetimes(timezones=st.none() | st.just(UTC) | _OFFSETS))
def test_timestamp_is_what_from_datetime_gives(moment: datetime) -> None:
    assert timestamp(moment) == _reference(moment)


def test_timestamp_at_the_ends_of_the_range_and_around_the_epoch() -> None:
    for moment in (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 1, 18, 0, 0, 123_000),
    ):
        assert timestamp(moment) == _reference(moment)


def _segment(**changes: Any) -> Segment:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fields: dict[str, Any] = {
        "name": {"en": "Gold"},
        "description": {},
        "validity_from": None,
        "validity_to": moment,
        "status": SegmentStatus.ACTIVE,
        "site_code": "main",
        "mixins": {"n": 20},
        "metadata_mixins": {},
        "id": "gold",
        "version": 1,
        "created_at": moment,
        "modified_at": moment,
    }
    return Segment.model_construct(**{**fields, **changes})


def test_segment_messages_are_built_once_per_state_and_tenant() -> None:
    messages = SegmentMessages(entries=3)
    gold = _segment()
    first = messages.of("acme", gold)
    assert first == segment_to_proto(gold)
    assert messages.of("acme", _segment()) is first  # the same state: built once
    # The same id, version and instants in another tenant: its own message.
    elsewhere = _segment(name={"en": "Other"})
    assert messages.of("other", elsewhere) == segment_to_proto(elsewhere)
    assert messages.of("acme", gold) is first
    # Another state of the segment (each write adds 1 to the version, sets modified_at).
    later = gold.modified_at + timedelta(seconds=1)
    for changed in (_segment(version=2, name={"en": "New"}), _segment(modified_at=later)):
        assert messages.of("acme", changed) == segment_to_proto(changed)
    # Past `entries` the cache starts again, and answers as before.
    assert messages.of("acme", gold) == segment_to_proto(gold)


def _reference_result(result: BulkItemResult) -> common_pb2.BulkItemResult:
    """Every field set by keyword, whatever its value (what add_bulk_results skips)."""
    failure = result.failure
    return common_pb2.BulkItemResult(
        index=result.index,
        code=result.code,
        status=HTTPStatus(result.code).phrase,
        customer_id=result.customer_id,
        legal_entity_id=result.legal_entity_id,
        message=failure.message if failure else "",
        reason=failure.reason if failure else "",
        field=failure.field if failure else "",
        field_description=failure.problem if failure else "",
    )


def test_bulk_results_built_in_place_are_the_reference_messages() -> None:
    invalid = ItemFailure.of(InvalidArgument("mixins_json", "must be a JSON object"))
    results = [
        BulkItemResult(1, 201, "c1", ""),
        BulkItemResult(2, 204, "c2", "le2"),
        BulkItemResult(3, 400, "", "", invalid),
        BulkItemResult(4, 409, "c4", "le4", ItemFailure("changed", Reason.VERSION_MISMATCH)),
        BulkItemResult(5, 500, "c5", "", ITEM_NOT_WRITTEN),
    ]
    response = assignment_pb2.BulkUpsertAssignmentsResponse()
    add_bulk_results(response.results, results)
    assert list(response.results) == [_reference_result(result) for result in results]
    expected = assignment_pb2.BulkUpsertAssignmentsResponse(
        results=[_reference_result(result) for result in results]
    )
    assert response.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
