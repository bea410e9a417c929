"""Pages that fit the message a client can receive.

A page of 60 items of 100 KB each is 6 MB, more than the 4 MiB a gRPC client receives by
default, and no client could read that page at all. Such a page ends early instead: it keeps
the items that fit in PAGE_BUDGET_BYTES (at least one, however large; see limits.py), and its
next_page_token goes on right after the last item kept.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.message import Message

from customer_segments.limits import PAGE_BUDGET_BYTES
from customer_segments.services.paging import Listed

Response = TypeVar("Response", bound=Message)


def _encoded_size(item_bytes: int) -> int:
    """An item of a repeated message field on the wire: tag, length, the item."""
    return 1 + max(1, (item_bytes.bit_length() + 6) // 7) + item_bytes


def within_budget(
    response: Response, items_field: str, page: Listed[Any], budget: int = PAGE_BUDGET_BYTES
) -> Response:
    """`response` (whose `items_field` holds the items of `page`, in order), cut short if
    it is larger than `budget`, its next_page_token then the cursor after the last item kept."""
    size = response.ByteSize()
    if size <= budget:
        return response
    items = getattr(response, items_field)
    sizes = [_encoded_size(item.ByteSize()) for item in items]
    used = size - sum(sizes)  # what is not items: cursors, total
    keep = 0
    for item_size in sizes:
        if used + item_size > budget:
            break
        used += item_size
        keep += 1
    while True:
        cut = page.cut(keep)  # at least one item
        del items[len(cut.items) :]
        response.next_page_token = cut.cursors.next  # type: ignore[attr-defined]
        # The new cursor may be longer than the one measured; then one item fewer.
        if len(cut.items) == 1 or response.ByteSize() <= budget:
            return response
        keep = len(cut.items) - 1
