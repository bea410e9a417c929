"""grpc/convert.py's own arithmetic against protobuf's reference conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from customer_segments.domain.segment import Segment, SegmentStatus
from customer_segments.grpc.convert import SegmentMessages, segment_to_proto, timestamp


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
