"""Sorted pages of any resource: ORDER BY with the key as tie-breaker, offset pages, and keyset
(seek) pages that start after a boundary row, so that a page deep in a segment costs what the
first one does.

The tie-breaking key columns follow the direction of the last sort field, so that a sort on one
indexed column plus the key reads an index forwards or backwards in one sweep. Nullable columns
sort nulls first ascending and last descending, on both databases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, bindparam, false, or_, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain.errors import InvalidArgument, Reason
from customer_segments.domain.listing import Boundary, Item, Slice, SortField, Window
from customer_segments.query.syntax import FieldKind

_PYTHON_TYPES: dict[FieldKind, type] = {
    FieldKind.TEXT: str,
    FieldKind.INTEGER: int,
    FieldKind.INSTANT: datetime,
}


@dataclass(frozen=True)
class SortColumn:
    column: ColumnElement[Any]
    kind: FieldKind
    nullable: bool = False


@dataclass(frozen=True)
class _Key:
    column: SortColumn
    descending: bool


def sort_keys(
    sort: Sequence[SortField],
    columns: dict[str, SortColumn],
    tie_breakers: Sequence[SortColumn],
) -> list[_Key]:
    keys: list[_Key] = []
    seen: set[int] = set()
    for field in sort:
        column = columns[field.field]
        if id(column.column) not in seen:  # an alias sorted twice sorts once
            keys.append(_Key(column, field.descending))
            seen.add(id(column.column))
    descending = keys[-1].descending if keys else False
    keys += [_Key(column, descending) for column in tie_breakers if id(column.column) not in seen]
    return keys


def _order(keys: Sequence[_Key], backwards: bool) -> list[ColumnElement[Any]]:
    order: list[ColumnElement[Any]] = []
    for key in keys:
        column = key.column.column
        if key.descending != backwards:
            order.append(column.desc().nulls_last() if key.column.nullable else column.desc())
        else:
            order.append(column.asc().nulls_first() if key.column.nullable else column.asc())
    return order


def _after(keys: Sequence[_Key], values: Sequence[Any], backwards: bool) -> ColumnElement[bool]:
    """Rows after the boundary in the reading order."""
    directions = {key.descending != backwards for key in keys}
    if len(directions) == 1 and not any(key.column.nullable for key in keys):
        # One row-value comparison: PostgreSQL turns it into an index range scan.
        columns = tuple_(*(key.column.column for key in keys))
        bound = tuple_(
            *(
                bindparam(None, value, type_=key.column.column.type)
                for key, value in zip(keys, values, strict=True)
            )
        )
        return columns < bound if directions == {True} else columns > bound
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for key, value in zip(keys, values, strict=True):
        column = key.column.column
        if key.descending != backwards:  # descending, nulls last
            beyond = false() if value is None else or_(column < value, column.is_(None))
        else:  # ascending, nulls first
            beyond = column.is_not(None) if value is None else column > value
        alternatives.append(and_(*equal_so_far, beyond))
        equal_so_far.append(column.is_(None) if value is None else column == value)
    return or_(*alternatives)


def _checked(keys: Sequence[_Key], boundary: Boundary) -> tuple[Any, ...]:
    """The boundary's values, if they fit the sort; a cursor of another query does not."""
    values = boundary.values
    fits = len(values) == len(keys) and all(
        (value is None and key.column.nullable) or isinstance(value, _PYTHON_TYPES[key.column.kind])
        for key, value in zip(keys, values, strict=False)
    )
    if not fits:
        raise InvalidArgument(
            "page_token", "does not belong to this query", Reason.INVALID_PAGE_TOKEN
        )
    return values


def paged(
    statement: Select[Any],
    keys: Sequence[_Key],
    size: int,
    offset: int,
    boundary: Boundary | None,
) -> Select[Any]:
    """The statement sorted and cut to one page plus one row (which tells whether there is
    more), with the sort-key values as extra columns `sort_key_<n>`."""
    backwards = boundary is not None and boundary.backwards
    if boundary is not None:
        statement = statement.where(_after(keys, _checked(keys, boundary), backwards))
    else:
        statement = statement.offset(offset)
    return (
        statement.add_columns(
            *(key.column.column.label(f"sort_key_{n}") for n, key in enumerate(keys))
        )
        .order_by(*_order(keys, backwards))
        .limit(size + 1)
    )


async def read_slice(
    connection: AsyncConnection,
    statement: Select[Any],
    keys: Sequence[_Key],
    window: Window,
    convert: Callable[[Row[Any]], Item],
) -> Slice[Item]:
    """One page of `statement` (sorted by `keys`, cut to `window`) in presentation order,
    with whether more rows lie beyond it and the sort keys of each row."""
    boundary = window.boundary
    rows = list(
        await connection.execute(paged(statement, keys, window.size, window.offset, boundary))
    )
    more = len(rows) > window.size
    rows = rows[: window.size]
    if boundary is not None and boundary.backwards:
        rows.reverse()
    sort_keys_from = len(rows[0]) - len(keys) if rows else 0  # sort_key_<n> columns come last
    return Slice(
        [convert(row) for row in rows], more, tuple(tuple(row[sort_keys_from:]) for row in rows)
    )
