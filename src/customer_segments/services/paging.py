"""What every list use case does around its store calls: q and sort parsed, offset or cursor
paging, and the cursors of the neighbouring pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Generic, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain import cursor
from customer_segments.domain.errors import over_limit
from customer_segments.domain.listing import (
    Boundary,
    Item,
    Page,
    Slice,
    SortField,
    Window,
    parse_sort,
)
from customer_segments.query.parser import Searchable, parse_q
from customer_segments.query.syntax import Query
from customer_segments.store.database import StatementTimedOut
from customer_segments.store.store import Store

# A query with a regular expression is cancelled after this long.
REGEX_TIMEOUT_MS = 5000


class Listing(NamedTuple):
    """A list request, parsed."""

    query: Query
    sort: list[SortField]
    window: Window
    fingerprint: str  # what its cursors are bound to

    @property
    def by_cursor(self) -> bool:
        return self.window.boundary is not None


def listing(
    scope: Sequence[str],
    q: str,
    sort: str,
    page: Page,
    page_token: str,
    searchable: Searchable,
    sortable: frozenset[str],
) -> Listing:
    """`scope` names what is listed (resource, tenant, segment...); a cursor made for another
    scope, q or sort is refused. A page token wins over the page number."""
    query = parse_q(q, searchable)
    order = parse_sort(sort, sortable)
    sort_text = ",".join(f"{f.field}:{'desc' if f.descending else 'asc'}" for f in order)
    fingerprint = cursor.fingerprint(*scope, q, sort_text)
    if page_token:
        window = Window(page.size, 0, cursor.decode(page_token, fingerprint))
    else:
        window = Window(page.size, page.offset, None)
    return Listing(query, order, window, fingerprint)


@asynccontextmanager
async def reading(store: Store, query: Query) -> AsyncIterator[AsyncConnection]:
    """A read connection. A query with a regular expression scans the segment: it waits for
    one of the few connections kept for expensive reads, so that such queries cannot take the
    connections other calls need, and runs under a statement timeout."""
    if not query.has_regex:
        async with store.read() as connection:
            yield connection
        return
    try:
        async with store.expensive_read(REGEX_TIMEOUT_MS) as connection:
            yield connection
    except StatementTimedOut as error:
        raise over_limit(
            "q", f"took longer than {error.timeout_ms} ms; make the regular expression narrower"
        ) from None


class Cursors(NamedTuple):
    next: str  # "" when there is no next page
    previous: str
    # What makes the cursor after any item of the page (see Listed.cut): the fingerprint of
    # the query and the sort-key values of each item.
    fingerprint: str = ""
    keys: Sequence[tuple[object, ...]] = ()


def cursors(request: Listing, page: Slice[Item]) -> Cursors:
    if not page.items:
        return Cursors("", "", request.fingerprint)
    boundary = request.window.boundary
    if boundary is not None and boundary.backwards:
        has_next, has_previous = True, page.more
    else:
        has_next = page.more
        has_previous = boundary is not None or request.window.offset > 0

    def token(values: tuple[object, ...], backwards: bool) -> str:
        return cursor.encode(request.fingerprint, Boundary(values, backwards))

    return Cursors(
        token(page.last_key, False) if has_next else "",
        token(page.first_key, True) if has_previous else "",
        request.fingerprint,
        page.keys,
    )


class Listed(NamedTuple, Generic[Item]):
    items: list[Item]
    total_count: int | None  # None unless asked for; never in cursor mode
    cursors: Cursors

    def cut(self, count: int) -> Listed[Item]:
        """The first `count` items (at least one), with the cursor of the page that goes on
        right after them: for a transport that cannot carry the whole page in one message."""
        count = max(count, 1)
        if count >= len(self.items):
            return self
        keys = self.cursors.keys
        following = cursor.encode(self.cursors.fingerprint, Boundary(keys[count - 1], False))
        return self._replace(
            items=self.items[:count],
            cursors=self.cursors._replace(next=following, keys=keys[:count]),
        )
