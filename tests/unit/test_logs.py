"""The processes' log lines: values cannot break a record into lines (tracebacks can, in
text); JSON lines carry the record's fields and the call's ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from customer_segments.logs import (
    FLUSH_DELAY_S,
    FORMAT_LATER,
    LogFormat,
    OneLineFormatter,
    configure_logging,
    escape_controls,
    log_handler,
    log_later,
    request_id,
    resolved_format,
)


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


def _logged(log_format: LogFormat, *args: object, **extra: object) -> str:
    """What one record logged through the processes' handler writes."""
    stream = io.StringIO()
    logger = logging.getLogger("customer_segments.test_logs")
    logger.propagate = False
    handler = log_handler(log_format, "worker", stream)
    logger.addHandler(handler)
    try:
        logger.warning("request %s failed", *args, extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


FORGED = "/a\nINFO customer_segments.audit: forged\r\u2028"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_newline_in_a_value_stays_on_one_line_in_both_formats(log_format: LogFormat) -> None:
    written = _logged(log_format, FORGED, tenant=FORGED)
    assert written.count("\n") == 1 and written.endswith("\n")
    assert "\u2028" not in written and "\r" not in written


def test_json_lines_carry_the_fields_of_the_record_and_the_call() -> None:
    token = request_id.set("req-7")
    try:
        line = json.loads(_logged("json", FORGED, tenant="acme", duration_ms=1.5))
    finally:
        request_id.reset(token)
    assert line["message"] == f"request {FORGED} failed"
    assert line["level"] == "WARNING" and line["logger"] == "customer_segments.test_logs"
    assert line["request_id"] == "req-7" and line["tenant"] == "acme"
    assert line["duration_ms"] == 1.5
    assert line["process"] == "worker" and line["pid"] == os.getpid()
    assert line["trace_id"] is None and line["span_id"] is None  # no span
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 3600


def test_json_lines_carry_the_ids_of_the_current_span() -> None:
    from opentelemetry import trace

    context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        line = json.loads(_logged("json", "x"))
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert line["span_id"] == "00f067aa0ba902b7"


def test_a_request_id_given_with_the_record_is_kept() -> None:
    token = request_id.set("of-the-call")
    try:
        line = json.loads(_logged("json", "x", request_id="of-the-request"))
    finally:
        request_id.reset(token)
    assert line["request_id"] == "of-the-request"


def test_an_unknown_level_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="invalid log_level: 'loud'"):
        configure_logging("loud", "text")


def test_the_format_follows_the_terminal_unless_given() -> None:
    # Under pytest stderr is captured, not a terminal: a log collector's case.
    assert resolved_format(None) == ("text" if sys.stderr.isatty() else "json")
    assert resolved_format("text") == "text"


class _CountedWrites(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_lines_logged_on_a_loop_are_written_in_one_batch_soon_after() -> None:
    stream = _CountedWrites()
    logger = logging.getLogger("tests.batching")
    logger.handlers, logger.propagate = [log_handler("text", stream=stream)], False
    logger.setLevel(logging.INFO)

    async def serve_calls() -> tuple[int, int]:
        for number in range(50):
            logger.info("call %d", number)
        written_at_once = stream.writes
        await asyncio.sleep(FLUSH_DELAY_S * 5)
        return written_at_once, stream.writes

    at_once, later = asyncio.run(serve_calls())
    assert (at_once, later) == (0, 1)
    assert stream.getvalue().count("\n") == 50
    # A warning, and a line logged outside any loop, are written at once.
    logger.info("outside a loop")
    assert stream.getvalue().endswith("outside a loop\n")

    async def warn() -> list[str]:
        logger.info("pending")
        logger.warning("now")
        return stream.getvalue().splitlines()[-2:]  # before the loop could flush anything

    pending, now = asyncio.run(warn())
    assert pending.endswith("INFO tests.batching: pending") and now.endswith("tests.batching: now")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_line_formatted_later_is_the_line_formatted_at_once(log_format: LogFormat) -> None:
    """FORMAT_LATER (the access line): formatted by the batch's write, not when logged, into
    the same line (the timestamp and the call's ids are the record's, taken when logged)."""
    streams = {later: io.StringIO() for later in (False, True)}
    handlers = {
        later: log_handler(log_format, "worker", stream) for later, stream in streams.items()
    }
    formatted: list[str] = []
    later_formatter = handlers[True].formatter
    assert later_formatter is not None
    original_format = later_formatter.format

    def counted(record: logging.LogRecord) -> str:
        formatted.append(record.getMessage())
        return original_format(record)

    later_formatter.format = counted  # type: ignore[method-assign]
    logger = logging.getLogger("customer_segments.access")
    logger.setLevel(logging.INFO)

    async def log_one() -> list[str]:
        request_id.set("req-later")
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            "(unknown file)",
            0,
            "grpc %s %s %.1fms",
            ("/a.B/C", "OK", 1.25),
            None,
            extra={"grpc_code": "OK", "duration_ms": 1.25, "tenant": None, FORMAT_LATER: True},
        )
        for later, handler in handlers.items():
            if not later:
                delattr(record, FORMAT_LATER)  # what an ordinary record is
            handler.handle(record)
            setattr(record, FORMAT_LATER, True)
        at_emit = list(formatted)
        await asyncio.sleep(FLUSH_DELAY_S * 3)
        return at_emit

    assert asyncio.run(log_one()) == []  # nothing formatted while the call went on
    assert formatted == ["grpc /a.B/C OK 1.2ms"]
    assert streams[True].getvalue() == streams[False].getvalue() != ""
    if log_format == "json":
        line = json.loads(streams[True].getvalue())
        assert line["request_id"] == "req-later" and FORMAT_LATER not in line


def test_a_line_formatted_later_that_fails_is_reported_and_the_batch_written() -> None:
    stream = io.StringIO()
    handler = log_handler("text", stream=stream)
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign, assignment]
    logger = logging.getLogger("tests.format_later")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)

    async def log_lines() -> None:
        logger.info("first")
        logger.info("broken %d", "not a number", extra={FORMAT_LATER: True})
        logger.info("last %s", "line", extra={FORMAT_LATER: True})
        await asyncio.sleep(FLUSH_DELAY_S * 3)

    asyncio.run(log_lines())
    assert [record.msg for record in errors] == ["broken %d"]
    assert [line.rsplit(": ", 1)[1] for line in stream.getvalue().splitlines()] == [
        "first",
        "last line",
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("given_id", [None, "of-the-request"])
def test_a_line_logged_later_is_the_line_logger_info_writes(
    log_format: LogFormat, given_id: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """log_later (the access lines) keeps a call's values and makes its record at flush: the
    same line as logger.info, with the time, request id and span ids of the call."""
    from opentelemetry import trace

    for name in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, False)
    monkeypatch.setattr(logging, "_srcfile", None)  # as configure_logging sets them
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.987654)
    span = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    written: dict[str, str] = {}
    for way in ("info", "later"):
        stream = io.StringIO()
        logger = logging.getLogger("tests.later")
        logger.handlers, logger.propagate = [log_handler(log_format, "worker", stream)], False
        logger.setLevel(logging.INFO)
        values = ("/a.B/C", "OK", 1.25, FORGED)
        extra: dict[str, object] = {"grpc_code": "OK", "duration_ms": 1.25, "peer": FORGED}
        if given_id is not None:
            extra["request_id"] = given_id

        async def log_one(
            way: str, logger: logging.Logger, values: tuple[object, ...], extra: dict[str, object]
        ) -> None:
            request_id.set("of-the-call")
            with trace.use_span(trace.NonRecordingSpan(span)):
                if way == "info":
                    logger.info("grpc %s %s %.1fms peer=%s", *values, extra=extra)
                else:
                    with pytest.MonkeyPatch.context() as patch:  # the set-up it is meant for
                        patch.setattr(logger, "info", None)
                        log_later(logger, "grpc %s %s %.1fms peer=%s", values, extra)
            request_id.set("another")  # the values of the call, not those at the flush
            await asyncio.sleep(FLUSH_DELAY_S * 3)

        asyncio.run(log_one(way, logger, values, extra))
        written[way] = stream.getvalue()
    assert written["later"] == written["info"] != ""
    if log_format == "json":
        line = json.loads(written["later"])
        assert line["request_id"] == (given_id or "of-the-call")
        assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_a_line_logged_later_reaches_any_other_handler_as_a_record() -> None:
    """With another handler (a test's caplog) on the way, log_later is logger.info."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign, assignment]
    logger = logging.getLogger("tests.later.other")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    log_later(logger, "grpc %s", ("/a.B/C",), {"grpc_code": "OK"})
    [record] = records
    assert record.getMessage() == "grpc /a.B/C" and record.__dict__["grpc_code"] == "OK"
