"""The typed syntax tree of a `q` query: what the parser produces and the store translates.

A query is a conjunction of conditions on fields. Values are typed by the field they compare
against (text, whole numbers, instants); for `mixins.<path>` fields, whose JSON has no schema,
by how they were written: `20` and `2.5` are numbers, `true`/`false` booleans, anything else
(and anything quoted) text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

from customer_segments.query.regex import Regex


class FieldKind(Enum):
    TEXT = "text"
    INTEGER = "integer"
    INSTANT = "instant"  # an ISO 8601 date-time, compared as a point in time
    JSON = "json"  # a value inside a JSON document (`mixins.<path>`), typed by its literal


class Operator(Enum):
    EQ = "="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="


Scalar = str | int | Decimal | bool | datetime


@dataclass(frozen=True)
class Field:
    name: str  # as the caller wrote it, e.g. "customer.id" or "mixins.tier"
    kind: FieldKind
    # For JSON fields: the document ("mixins") and the keys inside it.
    document: str = ""
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Compare:
    field: Field
    operator: Operator
    value: Scalar


@dataclass(frozen=True)
class AnyOf:
    field: Field
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Matches:
    field: Field
    pattern: Regex


@dataclass(frozen=True)
class IsNull:
    """`field:null`: null or absent."""

    field: Field


@dataclass(frozen=True)
class Presence:
    """`field:exists` (present, even if null) and `field:missing` (absent)."""

    field: Field
    present: bool


Condition = Compare | AnyOf | Matches | IsNull | Presence


@dataclass(frozen=True)
class Query:
    """Conditions that must all hold. The empty query matches everything."""

    conditions: tuple[Condition, ...] = ()

    def restricted_to(self, *conditions: Condition) -> Query:
        """This query with further conditions ANDed in (e.g. a caller's own view)."""
        return Query(self.conditions + conditions)

    @property
    def has_regex(self) -> bool:
        return any(isinstance(condition, Matches) for condition in self.conditions)
