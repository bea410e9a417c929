"""Parser of the Emporix `q` parameter into a list of conditions (ANDed).

This first version understands equality: `field:value` and `field:"quoted value"`, separated
by spaces. Other forms of the Emporix syntax get INVALID_ARGUMENT pointing at their position.
"""

from __future__ import annotations

from typing import NamedTuple

from customer_segments.domain.errors import InvalidArgument

_UNSUPPORTED_STARTS = ("(", ">", "<", "~")
_UNSUPPORTED_WORDS = ("null", "exists", "missing")


class Equals(NamedTuple):
    field: str
    value: str


def _fail(position: int, problem: str) -> InvalidArgument:
    return InvalidArgument("q", f"at position {position + 1}: {problem}")


def parse_q(text: str, searchable: frozenset[str]) -> list[Equals]:
    conditions: list[Equals] = []
    position = 0
    length = len(text)
    while position < length:
        if text[position].isspace():
            position += 1
            continue
        start = position
        colon = text.find(":", position)
        space = next((i for i in range(position, length) if text[i].isspace()), length)
        if colon == -1 or colon > space:
            raise _fail(start, f"expected field:value, got '{text[start:space]}'")
        field = text[start:colon]
        if field not in searchable:
            raise _fail(
                start,
                f"unknown field '{field}'; searchable fields: {', '.join(sorted(searchable))}",
            )
        position = colon + 1
        if position < length and text[position] == '"':
            value, position = _quoted(text, position)
        else:
            end = next((i for i in range(position, length) if text[i].isspace()), length)
            value = text[position:end]
            if not value:
                raise _fail(position, f"missing value for '{field}'")
            if value.startswith(_UNSUPPORTED_STARTS) or value in _UNSUPPORTED_WORDS:
                raise _fail(position, f"'{value}' is not supported yet; use field:value")
            position = end
        conditions.append(Equals(field, value))
    return conditions


def _quoted(text: str, opening: int) -> tuple[str, int]:
    chars: list[str] = []
    position = opening + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            chars.append(text[position + 1])
            position += 2
            continue
        if char == '"':
            return "".join(chars), position + 1
        chars.append(char)
        position += 1
    raise _fail(opening, "unterminated quoted value")
