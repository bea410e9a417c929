"""The logging set-up of every process (the command, each worker, the gateway process): one
record, one line, whatever the values in it; as text for a terminal, as JSON lines for a log
collector.

Values in log messages come from callers: a path decoded from `%0A`, a header, a claim. Logged
with `%s`, a newline in one writes a line of the caller's choosing, such as one that looks like
an audit record. The text formatter escapes control characters in everything it formats from
the record; a traceback logged on purpose (appended after the message) keeps its lines. JSON
escapes them by itself (and the traceback is a field of the one line).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from contextvars import ContextVar
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

# The request id of the call or request being served, set by the transport (the caller's
# x-request-id, or one it made); each call runs in a task of its own, so a value set for one
# call is never seen by another.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# C0 and C1 control characters, and the Unicode line and paragraph separators, which some
# log viewers also break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    return _NAMED.get(character) or f"\\u{ord(character):04x}"


def escape_controls(text: str) -> str:
    """`a\\nb` -> `a\\\\nb`: the text on one line, every control character visible."""
    return _CONTROL.sub(_escaped, text) if _CONTROL.search(text) else text


class OneLineFormatter(logging.Formatter):
    """Escapes control characters in the formatted record (its message and values); the
    exception and stack text that logging.Formatter appends after it keep their newlines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


def current_trace_ids() -> tuple[str | None, str | None]:
    """The trace and span id (hex) of the current OpenTelemetry span, or None. Only when the
    process has imported opentelemetry (tracing is on): logging imports nothing for it and
    costs a dictionary lookup otherwise."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None, None
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None, None
    return f"{span.trace_id:032x}", f"{span.span_id:016x}"


class CallFields(logging.Filter):
    """Gives each record the request id, trace id and span id of the call it is logged in
    (a record that names its request id in `extra=` keeps it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        record.trace_id, record.span_id = current_trace_ids()
        return True


def resolved_format(log_format: LogFormat | None) -> LogFormat:
    """None: text on a terminal, JSON lines otherwise (a collector reads stderr)."""
    if log_format is not None:
        return log_format
    return "text" if sys.stderr.isatty() else "json"


def _formatter(log_format: LogFormat, process: str | None) -> logging.Formatter:
    if log_format == "text":
        tag = f"[{process} {os.getpid()}] " if process else ""
        return OneLineFormatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
    # Only here: a text set-up never imports it.
    from pythonjsonlogger.json import JsonFormatter

    identity: dict[str, object] = {"pid": os.getpid()}
    if process:
        identity["process"] = process
    # Fields given with `extra=` (and CallFields') are added by the formatter itself.
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        static_fields=identity,
        timestamp=True,  # ISO 8601, UTC
    )


def configure_logging(
    level: str,
    log_format: LogFormat | None = None,
    *,
    process: str | None = None,
    force: bool = False,
) -> None:
    """Records of `level` and above to stderr, one line each; `process` (worker, gateway)
    tags the lines of a process that is not the command itself. `force` replaces a set-up
    the process has already (a forked worker inherits its parent's). A level logging does not
    know is a ValueError naming it."""
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise ValueError(f"invalid log_level: {level!r} (DEBUG, INFO, WARNING or ERROR)")
    handler = log_handler(resolved_format(log_format), process)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=force)
    # What no line shows is not gathered for each record (the logging HOWTO's
    # "Optimization"): the access log writes one per call, on the event loop.
    logging._srcfile = None  # the caller's file and line: a walk of the stack
    logging.logThreads = False
    logging.logProcesses = False  # the pid is a field of the formatter's own
    logging.logMultiprocessing = False


def log_handler(
    log_format: LogFormat, process: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """The handler of configure_logging, writing to `stream` (default stderr)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(log_format, process))
    handler.addFilter(CallFields())
    return handler
