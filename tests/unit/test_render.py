"""The REST renderers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from customer_segments.gateway import render


def _stamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(0, 0), (1_796_171_187, 642_999_999), (-62_135_596_800, 1_000_000), (253_402_300_799, 0)],
)
def test_timestamp_is_iso_8601_with_milliseconds(seconds: int, nanos: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    expected = f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos // 1_000_000:03d}Z"
    if moment.year < 1000:  # strftime does not pad the year everywhere
        expected = f"{moment.year:04d}" + expected[expected.index("-") :]
    assert render.timestamp(_stamp(seconds, nanos)) == expected
