"""The client's own types, in the domain's words: what callers pass in and get back.

They are independent of the protobuf messages (customer_segments.client._convert translates),
so a change of the wire format is not a change of the callers' code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Required, TypedDict


class AssignmentType(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    # Made through this API.
    MANUAL = "MANUAL"
    # Made by rules.
    AUTOMATIC = "AUTOMATIC"


class SegmentStatus(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


@dataclass(frozen=True)
class Metadata:
    created_at: datetime | None
    modified_at: datetime | None
    version: int
    # Mixin name -> schema URL.
    mixins: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Customer:
    id: str
    # From the customer directory; None when it does not know the customer.
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class LegalEntity:
    id: str
    name: str | None = None


@dataclass(frozen=True)
class Assignment:
    segment_id: str
    customer: Customer
    # None for a B2C assignment.
    legal_entity: LegalEntity | None
    assignment_type: AssignmentType
    mixins: dict[str, Any]
    # None only when a field selection left it out.
    metadata: Metadata | None


@dataclass(frozen=True)
class UpsertedAssignment:
    # True when the assignment did not exist before.
    created: bool
    assignment: Assignment


@dataclass(frozen=True)
class AssignmentPage:
    assignments: tuple[Assignment, ...]
    # Only when asked for with include_total_count (and never with a page token).
    total_count: int | None
    # Opaque cursors; None when there is no such page.
    next_page_token: str | None
    previous_page_token: str | None


@dataclass(frozen=True)
class BulkUpsertItem:
    customer_id: str
    # Empty for B2C.
    legal_entity_id: str = ""
    mixins: dict[str, Any] | None = None
    metadata_mixins: dict[str, Any] | None = None
    # When set, the item is written only if the stored version equals it.
    version: int | None = None


@dataclass(frozen=True)
class BulkRemoveItem:
    customer_id: str
    legal_entity_id: str = ""


@dataclass(frozen=True)
class BulkItemResult:
    # 1-based position of the item in the whole input.
    index: int
    # The HTTP status the item would have got alone: 201, 204, 400, 404 or 409.
    code: int
    # Its reason phrase ("Created", "No Content", "Bad Request", ...).
    status: str
    # What was wrong; empty on success.
    message: str
    customer_id: str
    legal_entity_id: str
    # The ErrorInfo reason its single call would have failed with (INVALID_ARGUMENT,
    # SEGMENT_NOT_FOUND, VERSION_MISMATCH, ...); empty on success.
    reason: str = ""
    # The item field the failure is about, as the server names it (`customer_id`,
    # `mixins_json`); empty when it names none.
    field: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


@dataclass(frozen=True)
class Segment:
    id: str
    # Language code -> text.
    name: dict[str, str]
    description: dict[str, str]
    status: SegmentStatus
    site_code: str
    valid_from: datetime | None
    valid_to: datetime | None
    mixins: dict[str, Any]
    metadata: Metadata | None


@dataclass(frozen=True)
class UpsertedSegment:
    created: bool
    segment: Segment


@dataclass(frozen=True)
class SegmentPage:
    segments: tuple[Segment, ...]
    total_count: int | None
    next_page_token: str | None
    previous_page_token: str | None


@dataclass(frozen=True)
class PatchOperation:
    """One RFC 6902 operation: add, remove or replace. `value` is any JSON value (ignored by
    remove); a plain dict {"op": ..., "path": ..., "value": ...} is accepted as well."""

    op: str
    path: str
    value: Any = None


class Listing(TypedDict, total=False):
    """How a list call pages: keyword arguments of list_assignments, search_assignments and
    list_segments."""

    # Emporix query and sort syntax (README "Search").
    q: str
    sort: str
    # 0: the server's default (60); at most 1000.
    page_size: int
    # 1-based; ignored with a page_token.
    page_number: int
    # A next_page_token or previous_page_token of an earlier page of the same q and sort.
    page_token: str | None
    # Fill total_count (a count of all matches; never with a page_token).
    include_total_count: bool


class AssignmentListing(Listing, total=False):
    # Assignment paths to return (e.g. customer.id, metadata.version); None: everything.
    fields: Sequence[str] | None


class SegmentFields(TypedDict, total=False):
    """A segment as written: keyword arguments of create_segment and upsert_segment."""

    # Language code -> text.
    name: Required[Mapping[str, str]]
    site_code: Required[str]
    description: Mapping[str, str] | None
    # INACTIVE when not given.
    status: SegmentStatus
    valid_from: datetime | None
    valid_to: datetime | None
    mixins: Mapping[str, Any] | None
    # Mixin name -> schema URL.
    metadata_mixins: Mapping[str, Any] | None


@dataclass(frozen=True)
class BulkSegmentItem:
    """One segment of a bulk create or upsert. For a create, an empty `segment_id` gets a
    generated one and `version` must be None; for an upsert, `segment_id` is required and a
    `version` makes the write conditional (409 when the stored version differs)."""

    segment_id: str
    fields: SegmentFields
    version: int | None = None


@dataclass(frozen=True)
class BulkSegmentResult:
    # 1-based position of the item in the request.
    index: int
    # The HTTP status the item would have got alone: 201, 204, 400, 404 or 409.
    code: int
    # Its reason phrase ("Created", "No Content", "Bad Request", ...).
    status: str
    # What was wrong; empty on success.
    message: str
    # The segment the item addressed (the generated id of a created one).
    segment_id: str
    # The ErrorInfo reason its single call would have failed with (INVALID_ARGUMENT,
    # SEGMENT_ALREADY_EXISTS, VERSION_MISMATCH, ...); empty on success.
    reason: str = ""
    # The field the failure is about, as the server names it (`segment.mixins_json`,
    # `segment.validity.start_time`); empty when it names none.
    field: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300
