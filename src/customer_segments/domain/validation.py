"""Checks shared by every use case: identifiers, tenants and JSON objects, each naming its field.

Plain functions rather than pydantic fields here because they sit on the hottest paths
(every Get validates four identifiers) and must report the caller's field name.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import ValidationError

from customer_segments.domain.errors import InvalidArgument

TENANT_PATTERN = re.compile(r"[a-z][a-z0-9]{2,15}")
MAX_ID_LENGTH = 255
# Control characters have no business in an identifier and break logs and URLs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def tenant(value: str, field: str = "tenant") -> str:
    if not TENANT_PATTERN.fullmatch(value):
        raise InvalidArgument(field, "must match ^[a-z][a-z0-9]+$ and have 3 to 16 characters")
    return value


def identifier(value: str, field: str) -> str:
    """A required id (segment, customer): 1 to 255 characters, no control characters."""
    if not value:
        raise InvalidArgument(field, "is required")
    return optional_identifier(value, field)


# What a valid non-empty id looks like, checked in one step; the checks below say what is wrong.
_VALID_ID = re.compile(r"[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,253}[^\x00-\x1f\x7f\s])?")


def optional_identifier(value: str, field: str) -> str:
    """An id that may be empty (the legal entity of a B2C assignment)."""
    if not value or _VALID_ID.fullmatch(value):
        return value
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(field, f"must have at most {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(field, "must not contain control characters")
    raise InvalidArgument(field, "must not start or end with whitespace")


def localized_text(texts: dict[str, str], field: str) -> dict[str, str]:
    """Language code -> text: stored as JSON, so no NUL characters (PostgreSQL refuses them)."""
    for language, text in texts.items():
        if "\x00" in language or "\x00" in text:
            raise InvalidArgument(field, "must not contain the NUL character (\\u0000)")
    return texts


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is out of range")
    return number


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads with hooks builds a new decoder per call (~4 us, per bulk item).
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)

# How deep a JSON document (mixins, a patch value) may nest. Python's json and pydantic
# recurse: near 1,000 levels they raise RecursionError, how near depending on the stack of the
# caller, so a document one process stored could fail in the next one that reads it.
MAX_JSON_DEPTH = 100
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'[]{}"\\')
_INNERMOST = re.compile(rb"\[\]|\{\}")


def nested_deeper_than(text: str, limit: int) -> bool:
    """Whether valid JSON text nests arrays and objects more than `limit` deep."""
    if text.count("[") + text.count("{") <= limit:  # the common case: too few to be that deep
        return False
    # Brackets, quotes and backslashes only; then no escapes (in valid JSON every backslash
    # starts one), then nothing between quotes: the brackets outside strings.
    structure = text.encode("utf-8", "surrogatepass").translate(None, _NOT_STRUCTURE)
    structure = structure.replace(b"\\\\", b"").replace(b'\\"', b"").replace(b"\\", b"")
    structure = b"".join(structure.split(b'"')[::2])
    for _ in range(limit):  # each round removes the innermost pairs
        if not structure:
            return False
        structure = _INNERMOST.sub(b"", structure)
    return bool(structure)


def json_object(text: str, field: str) -> dict[str, Any]:
    """Parses JSON object text exactly: integers stay integers of any size; empty means {}.

    Also refuses what PostgreSQL's jsonb cannot store (NUL characters, lone surrogates), so
    that both databases accept exactly the same documents.
    """
    if not text:
        return {}
    value = json_value(text, field)
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


def json_value(text: str, field: str) -> Any:
    """Any JSON value, parsed and checked as json_object does."""
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidArgument(field, f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:
        raise InvalidArgument(field, f"is not valid JSON ({error})") from None
    if nested_deeper_than(text, MAX_JSON_DEPTH):
        raise InvalidArgument(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    lowered = text.lower()
    if "\\u0000" in lowered:
        raise InvalidArgument(field, "must not contain the NUL character (\\u0000)")
    if "\\ud" in lowered:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(field, "must not contain unpaired surrogates") from None
    return value


def dump_json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def from_pydantic(error: ValidationError, prefix: str = "") -> InvalidArgument:
    """The first problem of a pydantic error, as an InvalidArgument naming its field."""
    first = error.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    field = f"{prefix}.{path}" if prefix and path else (prefix or path)
    return InvalidArgument(field or "body", first["msg"])
