"""A query's syntax tree -> SQLAlchemy Core conditions, one code path for both databases.

Values only ever travel as bind parameters. Where the two databases need different SQL (JSON
lookups, regular expressions) the difference is confined to the small SQL functions below,
each compiled once per dialect; their path and pattern parameters are bound too, converted
for the dialect by their types.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Dialect,
    Numeric,
    String,
    Text,
    and_,
    bindparam,
    false,
    func,
    or_,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import Grouping
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NULLTYPE, TypeDecorator, TypeEngine

from customer_segments.query.regex import Regex
from customer_segments.query.syntax import (
    AnyOf,
    Compare,
    Condition,
    IsNull,
    Matches,
    Operator,
    Presence,
    Query,
    Scalar,
)

_COMPARISONS: dict[Operator, Callable[[Any, Any], ColumnElement[bool]]] = {
    Operator.EQ: operator.eq,
    Operator.GT: operator.gt,
    Operator.GE: operator.ge,
    Operator.LT: operator.lt,
    Operator.LE: operator.le,
}
_INT64 = 2**63
# Up to this many values, `mixins.x:(a,b,...)` also gets containment tests (GIN-indexable).
_CONTAINMENT_HINTS = 20


@dataclass(frozen=True)
class SqlField:
    column: ColumnElement[Any]
    nullable: bool = False
    # A stored value that means "absent" (the empty legal entity id of B2C assignments).
    absent: str | None = None


@dataclass(frozen=True)
class SqlFields:
    """Where a resource keeps its searchable fields: columns by API name, and the JSON
    documents (`mixins`) whose paths can be searched."""

    columns: Mapping[str, SqlField]
    documents: Mapping[str, ColumnElement[Any]]


def where(query: Query, fields: SqlFields) -> list[ColumnElement[bool]]:
    """One term of the WHERE's AND per condition, whatever the condition spells out itself:
    SQLite parses `a AND b AND c ...` into a tree one level deeper per term and refuses 1,000
    levels, so the parser's cap on conditions is then a cap on what reaches SQL."""
    return [_OneTerm(_condition(condition, fields)) for condition in query.conditions]


class _OneTerm(Grouping[bool]):
    """A condition in parentheses. A plain Grouping hands its contents' `operator` on (it
    proxies attributes), so and_() would flatten an AND inside it into the outer AND."""

    operator = None
    inherit_cache = True


def _condition(condition: Condition, fields: SqlFields) -> ColumnElement[bool]:
    field = condition.field
    if field.document:
        return _json_condition(condition, fields.documents[field.document], field.path)
    sql = fields.columns[field.name]
    column = sql.column
    if isinstance(condition, IsNull | Presence):
        absent = isinstance(condition, IsNull) or not condition.present
        if sql.absent is not None:
            return column == sql.absent if absent else column != sql.absent
        if sql.nullable:
            return column.is_(None) if absent else column.is_not(None)
        return false() if absent else true()
    expression: ColumnElement[bool]
    if isinstance(condition, Compare):
        expression = _COMPARISONS[condition.operator](column, condition.value)
    elif isinstance(condition, AnyOf):
        expression = column.in_(condition.values)
    else:
        expression = regex_search(column, _pattern(condition.pattern))
    if sql.absent is not None:
        expression = and_(expression, column != sql.absent)
    return expression


def _json_condition(
    condition: Condition, document: ColumnElement[Any], path: tuple[str, ...]
) -> ColumnElement[bool]:
    at = bindparam(None, path, type_=_JsonPath())
    if isinstance(condition, IsNull):
        return func.coalesce(json_kind(document, at), "null") == "null"
    if isinstance(condition, Presence):
        kind = json_kind(document, at)
        return kind.is_not(None) if condition.present else kind.is_(None)
    if isinstance(condition, Matches):
        return regex_search(json_string(document, at), _pattern(condition.pattern))
    if isinstance(condition, AnyOf):
        return _json_any_of(document, at, path, condition.values)
    return _json_compare(document, at, path, condition.operator, condition.value)


def _json_compare(
    document: ColumnElement[Any],
    at: Any,
    path: tuple[str, ...],
    comparison: Operator,
    value: Scalar,
) -> ColumnElement[bool]:
    compare = _COMPARISONS[comparison]
    if isinstance(value, bool):
        expression = json_boolean(document, at) == ("true" if value else "false")
    elif isinstance(value, int | Decimal):
        expression = compare(json_number(document, at), bindparam(None, value, _JsonNumber()))
    else:
        expression = compare(json_string(document, at), str(value))
    if comparison is not Operator.EQ:
        return expression
    # The exact test above decides; containment lets PostgreSQL use the GIN index first.
    return and_(json_contains(document, _fragment(path, value)), expression)


def _json_any_of(
    document: ColumnElement[Any], at: Any, path: tuple[str, ...], values: tuple[Scalar, ...]
) -> ColumnElement[bool]:
    """One IN per JSON type, not an OR per value: SQLite refuses expressions nested more than
    1,000 deep, and a long OR chain is that."""
    texts = [value for value in values if isinstance(value, str)]
    numbers = [v for v in values if isinstance(v, int | Decimal) and not isinstance(v, bool)]
    booleans = ["true" if value else "false" for value in values if isinstance(value, bool)]
    tests: list[ColumnElement[bool]] = []
    if texts:
        tests.append(json_string(document, at).in_(texts))
    if numbers:
        numbers_bound = bindparam(None, numbers, type_=_JsonNumber(), expanding=True)
        tests.append(json_number(document, at).in_(numbers_bound))
    if booleans:
        tests.append(json_boolean(document, at).in_(booleans))
    exact = or_(*tests)
    if len(values) > _CONTAINMENT_HINTS:
        return exact
    hints = or_(*(json_contains(document, _fragment(path, value)) for value in values))
    return and_(hints, exact)


def _fragment(path: tuple[str, ...], value: Scalar) -> str:
    """The JSON document {path: value} for a containment test."""
    fragment = json.dumps(value) if isinstance(value, bool | str) else str(value)
    for key in reversed(path):
        fragment = f"{{{json.dumps(key)}:{fragment}}}"
    return fragment


def _pattern(regex: Regex) -> Any:
    return bindparam(None, regex, type_=_RegexPattern())


# --- bound values that each dialect spells its own way ---


class _JsonPath(TypeDecorator[tuple[str, ...]]):
    """Keys into a JSON document: a text[] for PostgreSQL's #>, a JSON path for SQLite. The
    keys were validated by the parser (letters, digits, _ and -), so the quoting is safe."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Text()))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: tuple[str, ...] | None, dialect: Dialect) -> Any:
        assert value is not None
        if dialect.name == "postgresql":
            return list(value)
        return "$" + "".join(f'."{key}"' for key in value)


class _JsonNumber(TypeDecorator[int | Decimal]):
    """Exact numeric on PostgreSQL; SQLite compares its JSON numbers as int64 or double."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric())
        return NULLTYPE  # no conversion: sqlite3 binds int and float as they are

    def process_bind_param(self, value: int | Decimal | None, dialect: Dialect) -> Any:
        assert value is not None
        if dialect.name == "postgresql":
            return Decimal(value)
        if isinstance(value, int) and -_INT64 <= value < _INT64:
            return value
        return float(value)


class _RegexPattern(TypeDecorator[Regex]):
    impl = String
    cache_ok = True

    def process_bind_param(self, value: Regex | None, dialect: Dialect) -> str:
        assert value is not None
        return value.postgresql if dialect.name == "postgresql" else value.re2


# --- SQL functions with one spelling per dialect ---


class _Predicate(FunctionElement[bool]):
    type = Boolean()
    inherit_cache = True


class _Text(FunctionElement[str]):
    type = String()
    inherit_cache = True


class regex_search(_Predicate):
    """regex_search(value, pattern): the pattern matches somewhere in value."""

    inherit_cache = True


class json_contains(_Predicate):
    """json_contains(document, fragment JSON text): PostgreSQL's @>, which a GIN index
    answers; always true on SQLite, where the exact test beside it decides alone."""

    inherit_cache = True


class json_kind(_Text):
    """json_kind(document, path): 'string', 'number', 'boolean', 'null', 'object', 'array',
    or NULL when the path is absent."""

    inherit_cache = True


class json_string(_Text):
    """The text at path when it is a JSON string, else NULL."""

    inherit_cache = True


class json_boolean(_Text):
    """'true' or 'false' when the value at path is a JSON boolean, else NULL."""

    inherit_cache = True


class json_number(FunctionElement[Decimal]):
    """The number at path when it is a JSON number, else NULL."""

    type = Numeric()
    inherit_cache = True


# {0} and {1} are the compiled arguments: (document, path) of the JSON lookups.
_AT = "{0} #> CAST({1} AS TEXT[])"
_TEXT_AT = "{0} #>> CAST({1} AS TEXT[])"
_TYPE = "json_type({0}, {1})"
_SPELLINGS: dict[str, dict[type[FunctionElement[Any]], str]] = {
    "postgresql": {
        regex_search: "({0} ~ {1})",
        json_contains: "({0} @> CAST({1} AS JSONB))",
        json_kind: f"jsonb_typeof({_AT})",
        # By code point, as SQLite and the text columns (COLLATE "C", migration 0004) compare.
        json_string: f"CASE WHEN jsonb_typeof({_AT}) = 'string' "
        f'THEN ({_TEXT_AT}) COLLATE "C" END',
        json_number: f"CASE WHEN jsonb_typeof({_AT}) = 'number' "
        f"THEN CAST({_TEXT_AT} AS NUMERIC) END",
        json_boolean: f"CASE WHEN jsonb_typeof({_AT}) = 'boolean' THEN {_TEXT_AT} END",
    },
    "sqlite": {
        regex_search: "re2_search({1}, {0})",  # registered by the store on every connection
        json_contains: "1",
        json_kind: f"CASE {_TYPE} WHEN 'text' THEN 'string' WHEN 'integer' THEN 'number' "
        f"WHEN 'real' THEN 'number' WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' "
        f"ELSE {_TYPE} END",
        json_string: f"CASE WHEN {_TYPE} = 'text' THEN json_extract({{0}}, {{1}}) END",
        json_number: f"CASE WHEN {_TYPE} IN ('integer', 'real') "
        "THEN json_extract({0}, {1}) END",
        json_boolean: f"CASE {_TYPE} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END",
    },
}


def _spelled(template: str) -> Callable[..., str]:
    def render(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
        return template.format(*(compiler.process(arg, **kw) for arg in element.clauses))

    return render


for _dialect, _functions in _SPELLINGS.items():
    for _function, _template in _functions.items():
        compiles(_function, _dialect)(_spelled(_template))
