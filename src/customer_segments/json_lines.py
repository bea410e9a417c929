"""python-json-logger's JsonFormatter, with the same lines made at about half the cost.

With an access line per call, formatting the JSON line was most of what the access log cost
a call (py-spy on GetAssignment, bench/observability.py): the library's generic path goes
through its extension points for every record (a method call per field renamed, the encoder's
`default` hook for the timestamp, a new encoder per line). A record without a dict message,
exception or stack (every access line, nearly every other line) takes the direct path here:
the same fields in the same order, renamed the same way, encoded by one encoder of the same
class and options; anything else, or a formatter configured beyond what this module checks,
takes the library's own path. tests/unit/test_json_lines.py pins the two against each other.
Imported only for JSON logging (logs.py).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from json import encoder as json_encoder
from typing import Any

from pythonjsonlogger import json as json_logger


class JsonFormatter(json_logger.JsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The direct path only where it is known to write what the library would: the
        # library's serializer and encoder, no defaults, no time format, no keep-missing.
        self._direct = (
            self.json_serializer is json.dumps
            and self.json_encoder is json_logger.JsonEncoder
            and self.json_default is None
            and not self.defaults
            and not self.rename_fields_keep_missing
            and "asctime" not in self._required_fields
        )
        encoder = json_logger.JsonEncoder(
            indent=self.json_indent, ensure_ascii=self.json_ensure_ascii
        )
        self._encode = encoder.encode
        self._encode_plain = _plain_encoder(encoder) or encoder.encode
        rename = self.rename_fields
        self._required = [(field, rename.get(field, field)) for field in self._required_fields]
        self._static = {rename.get(key, key): value for key, value in self.static_fields.items()}
        timestamp = self.timestamp if isinstance(self.timestamp, str) else "timestamp"
        self._timestamp = rename.get(timestamp, timestamp) if self.timestamp else None
        # line_of_values knows these fields of a record, no other.
        self._values_suffice = set(self._required_fields) <= {"levelname", "name", "message"}

    def format(self, record: logging.LogRecord) -> str:
        if (
            not self._direct
            or isinstance(record.msg, dict)
            or record.exc_info
            or record.exc_text
            or record.stack_info
        ):
            return super().format(record)
        record.message = record.getMessage()
        fields = record.__dict__
        return self._line(
            {name: fields.get(field) for field, name in self._required},
            fields,
            record.created,
            self._encode,
        )

    def line_of_values(
        self, name: str, levelname: str, message: str, created: float, extra: Mapping[str, Any]
    ) -> str | None:
        """The line format() makes of a record of these values, `extra` its attributes beyond
        LogRecord's own (in the record's order), without making the record: or None where
        only a record would tell (the caller then makes one). logs.py's deferred lines."""
        if not self._direct or not self._values_suffice:
            return None
        required = {"levelname": levelname, "name": name, "message": message}
        log_data = {key: required[field] for field, key in self._required}
        return self._line(log_data, extra, created, self._encode_plain)

    def _line(
        self,
        log_data: dict[str, Any],
        fields: Mapping[str, Any],
        created: float,
        encode: Callable[[Any], str],
    ) -> str:
        rename = self.rename_fields
        log_data.update(self._static)
        skip = self._skip_fields
        for key, value in fields.items():
            # As the library's merge_record_extra: extras, not the record's own attributes.
            if key not in skip and not (hasattr(key, "startswith") and key.startswith("_")):
                log_data[rename.get(key, key)] = value
        if self._timestamp is not None:
            # What JsonEncoder makes of the datetime the library puts here.
            log_data[self._timestamp] = utc_isoformat(created)
        return self.prefix + encode(log_data)


def _plain_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str] | None:
    """encoder.encode(values) for a dict of plain values (str, numbers, None): the C encoder
    that encode() makes anew for each call, with its Python frames (most of what encoding an
    access line cost), made once with the same arguments. Without the check for circular
    references: plain values cannot hold one, and the check's dict, kept from call to call,
    would keep an entry after an error. None where encode() would not take the C path (no C
    accelerator, an indent)."""
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return None
    chunks = make(
        None,
        encoder.default,
        json_encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else json_encoder.encode_basestring,
        encoder.indent,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    return lambda values: "".join(chunks(values, 0))


_second: tuple[int, str] = (0, "")


def utc_isoformat(created: float) -> str:
    """datetime.fromtimestamp(created, UTC).isoformat(), its date and time made once a second.
    The microseconds are rounded as fromtimestamp rounds them (half to even, carried into the
    second); tests/unit/test_json_lines.py pins the two against each other."""
    global _second
    fraction, whole = math.modf(created)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        micro -= 1_000_000
        second += 1
    elif micro < 0:
        return datetime.fromtimestamp(created, tz=UTC).isoformat()  # before 1970
    cached, text = _second
    if cached != second or not text:
        text = datetime.fromtimestamp(second, tz=UTC).isoformat()[:-6]  # without "+00:00"
        _second = (second, text)
    return f"{text}.{micro:06d}+00:00" if micro else f"{text}+00:00"
