"""The logging set-up of every process (the command, each worker, the gateway process): one
record, one line, whatever the values in it.

Values in log messages come from callers: a path decoded from `%0A`, a header, a claim. Logged
with `%s`, a newline in one writes a line of the caller's choosing, such as one that looks like
an audit record. The formatter escapes control characters in everything it formats from the
record; a traceback logged on purpose (appended after the message) keeps its lines.
"""

from __future__ import annotations

import logging
import re

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


def configure_logging(level: str, format: str, *, force: bool = False) -> None:
    """logging.basicConfig, with the one-line formatter on its handler (stderr); `force`
    replaces a set-up the process has already (a forked worker inherits its parent's)."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=force)
