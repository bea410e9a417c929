"""Parser of the Emporix `q` parameter into a typed syntax tree (see syntax.py).

    query      := condition (spaces condition)*            conditions are ANDed
    condition  := field ':' spec
    spec       := value | op value | '~' regex | 'null' | 'exists' | 'missing'
                | '(' value (',' value)* ')'               any of
                | '(' op value ('AND' op value)* ')'       range
                | '(' '~' regex-with-spaces ')'
    op         := '>' | '>=' | '<' | '<='
    value      := bare | '"' text with \\" and \\\\ escapes '"'

Every error is InvalidArgument("q", "at position N: ...") with N 1-based.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from customer_segments.domain.errors import InvalidArgument, Reason
from customer_segments.query.regex import RegexError, compile_regex
from customer_segments.query.syntax import (
    AnyOf,
    Compare,
    Condition,
    Field,
    FieldKind,
    IsNull,
    Matches,
    Operator,
    Presence,
    Query,
    Scalar,
)

MAX_LENGTH = 4000
MAX_VALUES = 1000
# SQLite refuses expressions nested more than 1,000 deep; ANDed conditions nest one level each.
MAX_CONDITIONS = 500
MAX_PATH_DEPTH = 8
_PATH_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_FIELD_CHARS = re.compile(r"[A-Za-z0-9_.-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_WORDS = {"null", "exists", "missing"}
_OPERATORS = (">=", "<=", ">", "<")  # longest first
INT64 = 2**63


def fail(position: int, problem: str) -> InvalidArgument:
    """`position` is 0-based; the message counts from 1, as people do."""
    return InvalidArgument("q", f"at position {position + 1}: {problem}", Reason.INVALID_QUERY)


class Searchable:
    """The fields a resource can be searched by: plain fields by name, and the JSON documents
    (like `mixins`) whose paths can be searched as `mixins.a.b`."""

    def __init__(self, fields: Mapping[str, FieldKind], documents: frozenset[str]) -> None:
        self.fields = dict(fields)
        self.documents = documents

    def describe(self) -> str:
        names = sorted(self.fields) + [f"{document}.<path>" for document in sorted(self.documents)]
        return ", ".join(names)


def parse_q(text: str, searchable: Searchable) -> Query:
    return Query(tuple(_Parser(text, searchable).conditions()))


class _Parser:
    def __init__(self, text: str, searchable: Searchable) -> None:
        if len(text) > MAX_LENGTH:
            raise fail(MAX_LENGTH, f"q is longer than {MAX_LENGTH} characters")
        for position, char in enumerate(text):
            # Control characters and lone surrogates cannot be stored text on either database.
            if unicodedata.category(char) in ("Cc", "Cs") and char not in " \t":
                raise fail(position, f"character U+{ord(char):04X} is not allowed")
        self.text = text
        self.searchable = searchable
        self.position = 0

    def _peek(self, offset: int = 0) -> str:
        index = self.position + offset
        return self.text[index] if index < len(self.text) else ""

    def _skip_spaces(self) -> None:
        while self._peek().isspace():
            self.position += 1

    def _at_boundary(self) -> bool:
        return self._peek() == "" or self._peek().isspace()

    def conditions(self) -> list[Condition]:
        found: list[Condition] = []
        self._skip_spaces()
        while self.position < len(self.text):
            start = self.position
            found += self._condition()
            # Each comparison of a range is a condition of its own in SQL too.
            if len(found) > MAX_CONDITIONS:
                raise fail(
                    start,
                    f"at most {MAX_CONDITIONS} conditions (each comparison of a range counts)",
                )
            if not self._at_boundary():
                raise fail(self.position, "expected a space between conditions")
            self._skip_spaces()
        return found

    def _condition(self) -> list[Condition]:
        start = self.position
        name = _FIELD_CHARS.match(self.text, start)
        assert name is not None  # the pattern matches the empty string
        self.position = name.end()
        if self._peek() != ":":
            word = self.text[start : self._word_end()]
            raise fail(start, f"expected field:value, got '{word}'")
        field = self._field(name.group(), start)
        self.position += 1
        char = self._peek()
        if char == "(":
            return self._group(field)
        if char == "~":
            self.position += 1
            regex_start = self.position
            end = self._word_end()
            self.position = end
            return [self._matches(field, self.text[regex_start:end], regex_start)]
        operator = self._operator()
        value_start = self.position
        quoted, raw = self._value(in_group=False)
        if operator is None and not quoted and raw in _WORDS:
            return [_word_condition(field, raw)]
        value = _typed(field, raw, quoted, value_start)
        return [_compare(field, operator or Operator.EQ, value, value_start)]

    def _field(self, name: str, start: int) -> Field:
        searchable = self.searchable
        if name in searchable.fields:
            return Field(name, searchable.fields[name])
        document, dot, path = name.partition(".")
        if dot and document in searchable.documents:
            segments = tuple(path.split("."))
            if len(segments) > MAX_PATH_DEPTH:
                raise fail(start, f"'{name}' is deeper than {MAX_PATH_DEPTH} keys")
            offset = start + len(document) + 1
            for segment in segments:
                if not _PATH_SEGMENT.fullmatch(segment):
                    raise fail(
                        offset,
                        f"'{segment}' is not a valid key in '{name}' (letters, digits, _ and -, "
                        "starting with a letter or _, at most 64)",
                    )
                offset += len(segment) + 1
            return Field(name, FieldKind.JSON, document, segments)
        if not name:
            raise fail(start, "expected a field name before ':'")
        raise fail(start, f"unknown field '{name}'; searchable fields: {searchable.describe()}")

    def _word_end(self) -> int:
        end = self.position
        while end < len(self.text) and not self.text[end].isspace():
            end += 1
        return end

    def _operator(self) -> Operator | None:
        for symbol in _OPERATORS:
            if self.text.startswith(symbol, self.position):
                self.position += len(symbol)
                return Operator(symbol)
        return None

    def _value(self, *, in_group: bool) -> tuple[bool, str]:
        """(quoted, text) of the value at the current position."""
        start = self.position
        if self._peek() == '"':
            return True, self._quoted()
        end = start
        while end < len(self.text):
            char = self.text[end]
            if char.isspace() or (in_group and char in ",)") or char in '"(':
                break
            end += 1
        if end == start:
            found = self._peek()
            raise fail(start, f"expected a value, got '{found}'" if found else "missing value")
        self.position = end
        return False, self.text[start:end]

    def _quoted(self) -> str:
        opening = self.position
        chars: list[str] = []
        position = opening + 1
        while position < len(self.text):
            char = self.text[position]
            if char == "\\" and position + 1 < len(self.text):
                chars.append(self.text[position + 1])
                position += 2
                continue
            if char == '"':
                self.position = position + 1
                return "".join(chars)
            chars.append(char)
            position += 1
        raise fail(opening, "unterminated quoted value")

    def _group(self, field: Field) -> list[Condition]:
        opening = self.position
        self.position += 1
        self._skip_spaces()
        if self._peek() == "~":
            self.position += 1
            regex_start = self.position
            end = self._regex_group_end(opening)
            condition = self._matches(field, self.text[regex_start:end], regex_start)
            self.position = end + 1
            return [condition]
        if self._peek() in "<>" and self._peek():
            conditions = self._range(field)
        else:
            conditions = [self._any_of(field)]
        self._skip_spaces()
        if self._peek() != ")":
            raise fail(self.position, "expected ')'" if self._peek() else "'(' without ')'")
        self.position += 1
        return conditions

    def _regex_group_end(self, opening: int) -> int:
        """The ')' that closes `(~...)`: parentheses of the pattern itself are balanced,
        escaped ones and those in classes do not count."""
        depth = 0
        position = self.position
        in_class = False
        while position < len(self.text):
            char = self.text[position]
            if char == "\\":
                position += 2
                continue
            if in_class:
                in_class = char != "]"
            elif char == "[":
                in_class = True
            elif char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    return position
                depth -= 1
            position += 1
        raise fail(opening, "'(' without ')'")

    def _range(self, field: Field) -> list[Condition]:
        conditions: list[Condition] = []
        while True:
            operator_start = self.position
            operator = self._operator()
            if operator is None:
                raise fail(operator_start, "expected a comparison (>, >=, < or <=)")
            value_start = self.position
            quoted, raw = self._value(in_group=True)
            value = _typed(field, raw, quoted, value_start)
            conditions.append(_compare(field, operator, value, value_start))
            self._skip_spaces()
            if self.text[self.position : self.position + 3].upper() != "AND":
                return conditions
            self.position += 3
            if not self._peek().isspace():
                raise fail(self.position, "expected a space after AND")
            self._skip_spaces()

    def _any_of(self, field: Field) -> AnyOf:
        values: list[Scalar] = []
        while True:
            self._skip_spaces()
            value_start = self.position
            quoted, raw = self._value(in_group=True)
            values.append(_typed(field, raw, quoted, value_start))
            if len(values) > MAX_VALUES:
                raise fail(value_start, f"at most {MAX_VALUES} values in (a,b,...)")
            self._skip_spaces()
            if self._peek() != ",":
                return AnyOf(field, tuple(values))
            self.position += 1

    def _matches(self, field: Field, source: str, start: int) -> Matches:
        if field.kind not in (FieldKind.TEXT, FieldKind.JSON):
            raise fail(start - 1, f"'{field.name}' cannot be matched with a regular expression")
        try:
            return Matches(field, compile_regex(source))
        except RegexError as error:
            raise fail(start + error.offset, error.problem) from None


def _compare(field: Field, operator: Operator, value: Scalar, position: int) -> Compare:
    if isinstance(value, bool) and operator is not Operator.EQ:
        raise fail(position, "true and false can only be compared for equality")
    return Compare(field, operator, value)


def _word_condition(field: Field, word: str) -> Condition:
    if word == "null":
        return IsNull(field)
    return Presence(field, word == "exists")


def _typed(field: Field, raw: str, quoted: bool, position: int) -> Scalar:
    kind = field.kind
    if kind is FieldKind.TEXT:
        return raw
    if kind is FieldKind.INTEGER:
        if _INTEGER.fullmatch(raw) and -INT64 <= int(raw) < INT64:
            return int(raw)
        raise fail(position, f"'{field.name}' takes whole numbers, got '{raw}'")
    if kind is FieldKind.INSTANT:
        return _instant(field, raw, position)
    if quoted:
        return raw
    if raw in ("true", "false"):
        return raw == "true"
    if _NUMBER.fullmatch(raw):
        number = Decimal(raw)
        if not number.is_finite() or abs(number.adjusted()) > 300:
            raise fail(position, f"number '{raw}' is out of range")
        return int(number) if number == number.to_integral_value() else number
    return raw


def _instant(field: Field, raw: str, position: int) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise fail(
            position,
            f"'{field.name}' takes an ISO 8601 date-time like \"2024-05-01T12:00:00.000Z\", "
            f"got '{raw}'",
        ) from None
