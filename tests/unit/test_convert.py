"""grpc/convert.py's own arithmetic against protobuf's reference conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from customer_segments.grpc.convert import timestamp


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
