"""The logging set-up of every process (the command, each worker, the `gateway` command): one
record, one line, whatever the values in it; as text for a terminal, as JSON lines for a log
collector.

Values in log messages come from callers: a path decoded from `%0A`, a header, a claim. Logged
with `%s`, a newline in one writes a line of the caller's choosing, such as one that looks like
an audit record. The text formatter escapes control characters in everything it formats from
the record; a traceback logged on purpose (appended after the message) keeps its lines. JSON
escapes them by itself (and the traceback is a field of the one line).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Literal, NamedTuple, TextIO

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
    from customer_segments.json_lines import JsonFormatter

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
    """Records of `level` and above to stderr, one line each; `process` (worker)
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


# Lines below WARNING wait this long at most, or for this many more, before they are written.
FLUSH_DELAY_S = 0.1
MAX_PENDING_LINES = 256
# A record logged with this attribute true (`extra={FORMAT_LATER: True}`) and below WARNING is
# formatted when its batch is written rather than when it is logged: only for a record whose
# message arguments and extra fields are plain values (str, numbers, None), which cannot change
# meanwhile. The access line is one (grpc/access_log_interceptor.py). Formatters skip fields
# whose name starts with "_", as python-json-logger does.
FORMAT_LATER = "_format_later"


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes the lines logged on an event loop in batches: one write
    per FLUSH_DELAY_S rather than one per line. With an access line per call, a write (a
    system call) per line cost GetAssignment more than formatting the line did (py-spy,
    bench/observability.py). WARNING and above, and lines logged outside an event loop, are
    written at once; what is pending is written by flush(), which logging.shutdown() (at
    exit) and flush_logs() call.

    A FORMAT_LATER record is formatted by flush(), with the rest of its batch: formatted one
    by one between the calls' other work, access lines cost GetAssignment about 30 µs of
    server CPU a call more than formatted together (A/B, bench/observability.py's load)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str | logging.LogRecord | _Deferred] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and getattr(record, FORMAT_LATER, False):
            self._pending.append(record)
        else:
            line = self._line(record)
            if line is None:
                return
            self._pending.append(line)
        self._queued(record.levelno >= logging.WARNING)

    def defer(self, entry: _Deferred) -> None:
        """An INFO record's values (log_later), made into its record and line at flush."""
        self.acquire()  # as emit is called: flush() may swap the list from another thread
        try:
            self._pending.append(entry)
        finally:
            self.release()
        self._queued(False)

    def _queued(self, urgent: bool) -> None:
        if urgent or len(self._pending) >= MAX_PENDING_LINES:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: nothing would flush later
            self.flush()
            return
        if self._flush_on is not loop:  # none scheduled on this loop yet
            self._flush_on = loop
            loop.call_later(FLUSH_DELAY_S, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_on = None
        self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            if self._pending:
                pending, self._pending = self._pending, []
                lines = "".join(
                    line
                    for line in (
                        entry if isinstance(entry, str) else self._line(entry) for entry in pending
                    )
                    if line is not None
                )
                try:
                    self.stream.write(lines)
                except Exception:
                    return  # a closed or broken stream: logging must not fail the caller
            super().flush()
        finally:
            self.release()

    def _line(self, entry: logging.LogRecord | _Deferred) -> str | None:
        """The record's line, or None if making or formatting it failed (handleError reports
        it)."""
        if isinstance(entry, logging.LogRecord):
            record = entry
        else:
            try:
                # The JSON formatter writes the line of the values without a record.
                line_of_values = getattr(self.formatter, "line_of_values", None)
                line = None if line_of_values is None else entry.line(line_of_values)
                if line is not None:
                    return line + self.terminator
                record = entry.record()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": entry.msg, "args": entry.args}))
                return None
        try:
            return self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return None


def flush_logs() -> None:
    """Writes the lines the root logger's handlers hold: before a fork (a child would write
    them again) and at the end of a process that exits without logging.shutdown() (a forked
    multiprocessing worker)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def log_handler(
    log_format: LogFormat, process: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """The handler of configure_logging, writing to `stream` (default stderr)."""
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(_formatter(log_format, process))
    handler.addFilter(CallFields())
    return handler


class _Deferred(NamedTuple):
    """What Logger.info would have put in a record when log_later was called."""

    logger: logging.Logger
    created: float
    msg: str
    args: tuple[object, ...]
    extra: Mapping[str, object]
    request_id: str | None
    trace_ids: tuple[str | None, str | None]

    def fields(self) -> dict[str, object]:
        """The record's attributes beyond LogRecord's own, in its order: the extra ones, then
        those of CallFields (a request id given in `extra` keeps its place)."""
        fields = dict(self.extra)
        fields["request_id"] = self.request_id
        fields["trace_id"], fields["span_id"] = self.trace_ids
        return fields

    def line(self, line_of_values: Callable[..., str | None]) -> str | None:
        message = self.msg % self.args if self.args else str(self.msg)  # as getMessage
        return line_of_values(self.logger.name, "INFO", message, self.created, self.fields())

    def record(self) -> logging.LogRecord:
        logger = self.logger
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            "(unknown file)",  # what Logger._log names without a caller (_srcfile None)
            0,
            self.msg,
            self.args,
            None,
            "(unknown function)",
            self.extra,
        )
        # LogRecord.__init__'s own arithmetic, from the time of the call rather than now.
        created = self.created
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        record.relativeCreated = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
        record.request_id = self.request_id
        record.trace_id, record.span_id = self.trace_ids
        return record


def _sole_batching_handler(logger: logging.Logger) -> BatchingStreamHandler | None:
    """The one handler an INFO record of `logger` would reach, when it is a
    BatchingStreamHandler whose only filter is CallFields, nothing else on the way filters,
    and the record would be made as log_later makes it; otherwise None (a test's caplog
    handler, a set-up other than configure_logging's)."""
    if (
        logging._srcfile is not None
        or logging.logThreads
        or logging.logProcesses
        or logging.logMultiprocessing
        or getattr(logging, "logAsyncioTasks", False)
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    found: BatchingStreamHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or type(current).makeRecord is not logging.Logger.makeRecord:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not BatchingStreamHandler
                or handler.level > logging.INFO
                or len(handler.filters) != 1
                or type(handler.filters[0]) is not CallFields
            ):
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


def log_later(
    logger: logging.Logger, msg: str, args: tuple[object, ...], extra: Mapping[str, object]
) -> None:
    """`logger.info(msg, *args, extra=extra)` for a line of plain values (str, numbers, None)
    written by configure_logging's handler: its values are kept as they are and the record is
    made and formatted when its batch is written. Made per call, a record and its dispatch
    through the logging module cost GetAssignment's access line about 70 µs of server CPU a
    call. Any other set-up (more handlers, filters, a record factory) gets logger.info itself.
    The caller checks logger.isEnabledFor(logging.INFO)."""
    handler = _sole_batching_handler(logger)
    if handler is None:
        logger.info(msg, *args, extra={**extra, FORMAT_LATER: True})
        return
    given = extra.get("request_id")
    handler.defer(
        _Deferred(
            logger,
            time.time(),
            msg,
            args,
            extra,
            given if given is not None else request_id.get(),  # type: ignore[arg-type]
            current_trace_ids(),
        )
    )
