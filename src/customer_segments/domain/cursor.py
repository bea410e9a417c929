"""Opaque cursors of keyset paging.

A cursor carries the sort-key values of the row a page starts after (or before, going
backwards) and a fingerprint of the query it belongs to (resource, tenant, scope, q, sort). It
is base64url text with a checksum: a damaged, hand-edited or foreign cursor (another query's,
another segment's) is refused as INVALID_ARGUMENT naming `page_token`. Cursors are not
secrets: they hold values of a row the caller has already seen.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from customer_segments.domain.errors import InvalidArgument, Reason
from customer_segments.domain.listing import Boundary

MAX_LENGTH = 4096
_CHECKSUM_KEY = b"customer-segments cursor v1"
_CHECKSUM_SIZE = 12
_FIELD = "page_token"


@functools.lru_cache(maxsize=4096)  # every list call makes one; the same few, mostly
def fingerprint(*parts: str) -> str:
    """What a cursor must have been made for, e.g. fingerprint("assignments", tenant, ...)."""
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8", "replace"))
    return digest.hexdigest()[:24]


def _encoded(value: object) -> list[Any]:
    if value is None:
        return ["n"]
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return ["t", moment.isoformat()]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"cannot put {type(value).__name__} in a cursor")
    return ["i" if isinstance(value, int) else "s", value]


def encode(query_fingerprint: str, boundary: Boundary) -> str:
    payload = json.dumps(
        {
            "f": query_fingerprint,
            "b": boundary.backwards,
            "k": [_encoded(value) for value in boundary.values],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    checksum = hmac.new(_CHECKSUM_KEY, payload, hashlib.sha256).digest()[:_CHECKSUM_SIZE]
    return base64.urlsafe_b64encode(checksum + payload).decode("ascii").rstrip("=")


def _invalid(problem: str = "is not a cursor of this listing") -> InvalidArgument:
    return InvalidArgument(_FIELD, problem, Reason.INVALID_PAGE_TOKEN)


def decode(token: str, query_fingerprint: str) -> Boundary:
    if len(token) > MAX_LENGTH:
        raise _invalid(f"is longer than {MAX_LENGTH} characters")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _invalid() from None
    # The decoder skips stray characters and unused low bits: only the exact text counts.
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != token:
        raise _invalid()
    checksum, payload = raw[:_CHECKSUM_SIZE], raw[_CHECKSUM_SIZE:]
    expected = hmac.new(_CHECKSUM_KEY, payload, hashlib.sha256).digest()[:_CHECKSUM_SIZE]
    if not hmac.compare_digest(checksum, expected):
        raise _invalid()
    try:
        document = json.loads(payload)
        if document["f"] != query_fingerprint:
            raise _invalid("belongs to another query (q, sort, segment or tenant differ)")
        backwards = document["b"]
        values = tuple(_decoded(item) for item in document["k"])
    except (ValueError, KeyError, TypeError, IndexError, OverflowError):
        raise _invalid() from None
    if not isinstance(backwards, bool):
        raise _invalid()
    return Boundary(values, backwards)


def _decoded(item: list[Any]) -> object:
    tag = item[0]
    if tag == "n" and len(item) == 1:
        return None
    value = item[1]
    if tag == "t" and isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("naive instant")
        return moment.astimezone(UTC)
    if tag == "i" and isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ValueError("out of range")
        return value
    if tag == "s" and isinstance(value, str) and "\x00" not in value:
        value.encode("utf-8")  # lone surrogates raise UnicodeEncodeError, a ValueError
        return value
    raise ValueError(f"bad cursor value {item!r}")
