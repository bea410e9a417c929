"""json_lines.JsonFormatter writes what python-json-logger's JsonFormatter writes, record for
record, whichever path a record takes (the direct one for plain records, the library's for
the rest)."""

from __future__ import annotations

import datetime
import enum
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter as LibraryFormatter

from customer_segments.json_lines import JsonFormatter, utc_isoformat
from customer_segments.logs import CallFields, request_id

FORMAT = "%(levelname)s %(name)s %(message)s"
# The settings of logs.py's JSON lines, and others the direct path must also get right.
SETTINGS: list[dict[str, Any]] = [
    {
        "rename_fields": {"levelname": "level", "name": "logger"},
        "static_fields": {"pid": 1234, "process": "worker"},
        "timestamp": True,
    },
    {"timestamp": "time", "rename_fields": {"time": "@t", "grpc_code": "code"}},
    {},
    {"json_ensure_ascii": False, "reserved_attrs": ["args"]},
    {"defaults": {"team": "segments"}},  # the library's path: defaults are not handled directly
]


class Colour(enum.Enum):
    RED = "red"


def records() -> list[logging.LogRecord]:
    made: list[logging.LogRecord] = []

    def record(msg: Any, *args: Any, exc: bool = False, **extra: Any) -> None:
        exc_info = None
        if exc:
            try:
                raise ValueError("broken\nline")
            except ValueError:
                exc_info = sys.exc_info()
        found = logging.LogRecord(
            "customer_segments.access", logging.INFO, "", 0, msg, args, exc_info
        )
        found.__dict__.update(extra)
        CallFields().filter(found)
        made.append(found)

    token = request_id.set("req-1")
    try:
        record(
            "grpc %s %s %.1fms tenant=%s",
            "/customersegment.v1.CustomerAssignmentService/GetAssignment",
            "OK",
            1.25,
            "bench",
            grpc_method="/m",
            grpc_code="OK",
            duration_ms=1.25,
            tenant=None,
            peer="ipv4:127.0.0.1:5555",
        )
        record("no args, unicode é ✓ and a \n newline")
        record("values %s", "x", when=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC))
        record("more", path=Path("/tmp/x"), colour=Colour.RED, raw=b"\x00\xff", nested={"a": [1]})
        record("private", _hidden=1, pid=99, timestamp="mine", message="overwritten?")
        record("failed", exc=True, tenant="t")
        record({"event": "a dict message", "n": 1})
    finally:
        request_id.reset(token)
    stacked = logging.LogRecord("x", logging.WARNING, "", 0, "stack", (), None, sinfo="Stack:\n  a")
    made.append(stacked)
    return made


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_lines_are_the_librarys(settings: dict[str, Any]) -> None:
    ours, library = JsonFormatter(FORMAT, **settings), LibraryFormatter(FORMAT, **settings)
    for record in records():
        assert ours.format(record) == library.format(record)


def test_the_settings_of_the_service_take_the_direct_path() -> None:
    formatter = JsonFormatter(FORMAT, **SETTINGS[0])
    assert formatter._direct
    assert not JsonFormatter(FORMAT, **SETTINGS[-1])._direct


def library_timestamp(created: float) -> str:
    return datetime.datetime.fromtimestamp(created, tz=datetime.UTC).isoformat()


# Whole seconds (no fraction shown), half microseconds (rounded to even), a fraction that
# rounds up into the next second, and instants before 1970.
EDGES = [0.0, 1.0, 1764763200.0, 1764763200.0000005, 1764763200.0000015, 1764763200.9999996]
EDGES += [1764763200.9999994, 1764763201.5, 0.0000005, 59.9999999, -1.5, -0.0000004]


def test_timestamps_are_those_of_fromtimestamp_at_the_edges() -> None:
    for created in EDGES:
        assert utc_isoformat(created) == library_timestamp(created), created
    # Each after another, so that the second cached is a different one each time.
    for created in reversed(EDGES):
        assert utc_isoformat(created) == library_timestamp(created), created


@given(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False))
def test_timestamps_are_those_of_fromtimestamp(created: float) -> None:
    assert utc_isoformat(created) == library_timestamp(created)
    nearby = created + 0.25  # mostly the same second: the cached date and time
    assert utc_isoformat(nearby) == library_timestamp(nearby)
