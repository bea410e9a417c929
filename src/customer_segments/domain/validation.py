"""Checks shared by every use case: identifiers, tenants and JSON objects, each naming its field.

Plain functions rather than pydantic fields here because they sit on the hottest paths
(every Get validates four identifiers) and must report the caller's field name.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from customer_segments.domain.errors import InvalidArgument, over_limit

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
    if _VALID_ID.fullmatch(value):  # the common case in one step (a bulk item has two ids)
        return value
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
        raise over_limit(field, f"must have at most {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(field, "must not contain control characters")
    raise InvalidArgument(field, "must not start or end with whitespace")


MAX_DISPLAY_TEXT = 255


def display_text(value: str, field: str) -> str:
    """A name or e-mail shown with assignments: at most 255 characters and no control
    characters (PostgreSQL refuses NUL, and a line break has no place in a name)."""
    if len(value) > MAX_DISPLAY_TEXT:
        raise over_limit(field, f"must have at most {MAX_DISPLAY_TEXT} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(field, "must not contain control characters")
    return value


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


# Objects and arrays nested deeper than this are refused: Python's json and the layers that
# re-encode a document recurse once per level, and near the interpreter's recursion limit
# (~1,000) a document is written on one path and unreadable on every other.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep"


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (a top-level object is one),
    found level by level, without recursion."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
    return False


# Built once: json.loads with hooks builds a new decoder per call (~4 us, per bulk item).
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)


def json_object(text: str, field: str) -> dict[str, Any]:
    """Parses JSON object text exactly: integers stay integers of any size; empty means {}.

    Also refuses what PostgreSQL's jsonb cannot store (NUL characters, lone surrogates), so
    that both databases accept exactly the same documents.
    """
    if not text:
        return {}
    # The common document (a bulk item's mixins): an object without escapes and with too few
    # brackets to nest too deep, which json_value would scan and then pass through every check
    # below; taken in one step here (~1 us less per bulk item). Anything else, errors too,
    # goes through json_value.
    if text[:1] == "{" and "\\" not in text and text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        try:
            found, end = _scan_once(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if end == len(text):
                document: dict[str, Any] = found  # a dict: the scan started at "{"
                return document
    value = json_value(text, field)
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


def parse_json(text: str) -> Any:
    """JSON text as Python values, integers exactly (the decoder json_value checks with)."""
    return _DECODER.decode(text)


# The decoder's own scanner (the C one, with its hooks); typeshed leaves the attribute out.
_scan_once: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _decoded(text: str) -> Any:
    """What _DECODER.decode(text) answers or raises. A document that starts with "{" is
    scanned straight away: decode's skipping of white space on both sides and its wrapper
    cost more than scanning a small document (a bulk item's mixins), and a document that the
    scan does not take whole (white space after it, extra data, an error) goes through decode,
    so that errors read exactly as decode words them."""
    if text[:1] == "{":
        try:
            value, end = _scan_once(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if end == len(text):
                return value
    return _DECODER.decode(text)


def json_value(text: str, field: str) -> Any:
    """Any JSON value, parsed and checked as json_object does."""
    try:
        value = _decoded(text)
    except RecursionError:
        raise over_limit(field, TOO_DEEP) from None
    except ValueError as error:
        raise InvalidArgument(field, f"is not valid JSON ({error})") from None
    # Counting brackets is cheap and bounds the depth of nearly every document without a walk.
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH and nested_deeper_than(
        value, MAX_JSON_DEPTH
    ):
        raise over_limit(field, TOO_DEEP)
    if "\\" not in text:  # no escape at all, so neither check below can apply
        return value
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
