"""Paging, sorting and field selection of list calls, independent of any resource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from customer_segments.domain.errors import InvalidArgument, over_limit

DEFAULT_PAGE_SIZE = 60
MAX_PAGE_SIZE = 1000


class SortField(NamedTuple):
    field: str  # the API name, e.g. "metadata.modifiedAt"
    descending: bool


class Page(NamedTuple):
    number: int  # 1-based
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @classmethod
    def parse(cls, number: int, size: int) -> Page:
        """0 means "not given" (proto3 scalars have no presence): defaults apply."""
        if number < 0:
            raise InvalidArgument("page_number", "must be at least 1")
        if size < 0:
            raise InvalidArgument("page_size", "must be at least 1")
        if size > MAX_PAGE_SIZE:
            raise over_limit("page_size", f"must be at most {MAX_PAGE_SIZE}")
        return cls(number or 1, size or DEFAULT_PAGE_SIZE)


def parse_sort(text: str, allowed: frozenset[str], field: str = "sort") -> list[SortField]:
    """`field[:asc|:desc],...`; direction is case-insensitive and defaults to ascending."""
    result: list[SortField] = []
    if not text.strip():
        return result
    for part in text.split(","):
        name, _, direction = part.strip().partition(":")
        if name not in allowed:
            raise InvalidArgument(
                field, f"cannot sort by '{name}'; sortable fields: {', '.join(sorted(allowed))}"
            )
        direction = direction.lower() or "asc"
        if direction not in ("asc", "desc"):
            raise InvalidArgument(field, f"direction of '{name}' must be asc or desc")
        result.append(SortField(name, direction == "desc"))
    return result


class Boundary(NamedTuple):
    """Where a cursor page starts: right after the row whose sort-key values these are, or,
    going backwards, right before it."""

    values: tuple[object, ...]
    backwards: bool


class Window(NamedTuple):
    """What to read: `size` rows from `offset`, or after `boundary` (cursor mode)."""

    size: int
    offset: int
    boundary: Boundary | None


Item = TypeVar("Item")


@dataclass(frozen=True)
class Slice(Generic[Item]):
    """One page as the store read it, in the order asked for."""

    items: list[Item]
    # Whether more rows lie beyond the page in the direction it was read.
    more: bool
    # Sort-key values of each item (for cursors), in the same order.
    keys: tuple[tuple[object, ...], ...] = ()

    @property
    def first_key(self) -> tuple[object, ...]:
        return self.keys[0] if self.keys else ()

    @property
    def last_key(self) -> tuple[object, ...]:
        return self.keys[-1] if self.keys else ()
