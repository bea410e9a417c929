"""The one-line log formatter: values cannot break a record into lines; tracebacks can."""

from __future__ import annotations

import logging
import sys

from customer_segments.logs import OneLineFormatter, escape_controls


def record(message: str, *args: object, exc_info: bool = False) -> logging.LogRecord:
    return logging.LogRecord(
        "customer_segments.gateway.app",
        logging.ERROR,
        __file__,
        1,
        message,
        args,
        sys.exc_info() if exc_info else None,
    )


def test_control_characters_in_values_are_escaped() -> None:
    formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    line = formatter.format(record("request %s failed", "/a\nINFO x: forged\r\t\x1b[2J\u2028"))
    assert line == (
        "ERROR customer_segments.gateway.app: request /a\\nINFO x: forged\\r\\t\\u001b[2J\\u2028"
        " failed"
    )


def test_a_traceback_logged_on_purpose_keeps_its_lines() -> None:
    formatter = OneLineFormatter("%(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        line = formatter.format(record("failed for %s", "a\nb", exc_info=True))
    first, *rest = line.splitlines()
    assert first == "failed for a\\nb"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_plain_text_is_returned_as_is() -> None:
    text = "GET /customer-segment/acme/segments/gold/customers é"
    assert escape_controls(text) is text
