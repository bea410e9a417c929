"""Segments: the groups that customer assignments belong to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from customer_segments.domain import validation
from customer_segments.domain.errors import InvalidArgument, ItemFailure


class SegmentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class SegmentFields(BaseModel):
    """What a caller writes on create and upsert (replaced as a whole by an upsert)."""

    model_config = ConfigDict(frozen=True)

    name: dict[str, str]
    description: dict[str, str]
    validity_from: datetime | None
    validity_to: datetime | None
    status: SegmentStatus
    site_code: str
    mixins: dict[str, Any]
    metadata_mixins: dict[str, Any]


class Segment(SegmentFields):
    id: str
    version: int
    created_at: datetime
    modified_at: datetime

    def is_active_at(self, moment: datetime) -> bool:
        """ACTIVE and within its validity (the store's SegmentFilter.active_at, in SQL)."""
        return (
            self.status == SegmentStatus.ACTIVE
            and (self.validity_from is None or self.validity_from <= moment)
            and (self.validity_to is None or moment <= self.validity_to)
        )


class SegmentUpsertOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    created: bool
    segment: Segment


def segment_fields(
    *,
    name: dict[str, str],
    description: dict[str, str],
    validity_from: datetime | None,
    validity_to: datetime | None,
    status: SegmentStatus | None,
    site_code: str,
    mixins_json: str,
    metadata_mixins_json: str,
) -> SegmentFields:
    """Validates what a caller writes; `status` None means not given (INACTIVE)."""
    if not name:
        raise InvalidArgument("segment.name", "is required (language code -> text)")
    for language, text in name.items():
        if not language or not text:
            raise InvalidArgument("segment.name", "needs a language code and a text per entry")
    validation.localized_text(name, "segment.name")
    validation.localized_text(description, "segment.description")
    if not site_code:
        raise InvalidArgument("segment.site_code", "is required")
    validation.optional_identifier(site_code, "segment.site_code")
    if validity_from and validity_to and validity_from > validity_to:
        raise InvalidArgument("segment.validity", "from must not be after to")
    return SegmentFields.model_construct(
        name=name,
        description=description,
        validity_from=validity_from,
        validity_to=validity_to,
        status=status or SegmentStatus.INACTIVE,
        site_code=site_code,
        mixins=validation.json_object(mixins_json, "segment.mixins_json"),
        metadata_mixins=validation.json_object(
            metadata_mixins_json, "segment.metadata.mixins_json"
        ),
    )


class SegmentInput(NamedTuple):
    """A segment as the caller wrote it, before validation (the use case validates it, once
    it has checked that the caller may write): the arguments of `segment_fields`."""

    name: dict[str, str]
    description: dict[str, str]
    validity_from: datetime | None
    validity_to: datetime | None
    status: SegmentStatus | None
    site_code: str
    mixins_json: str
    metadata_mixins_json: str

    def validated(self) -> SegmentFields:
        return segment_fields(**self._asdict())


class BulkSegmentUpsert(NamedTuple):
    """An item of a segment bulk upsert, before validation (validation is per item)."""

    segment_id: str
    segment: SegmentInput
    expected_version: int | None


@dataclass(frozen=True, slots=True)
class BulkSegmentResult:
    """One item's outcome in a segment bulk call: the HTTP code it would have got alone."""

    index: int  # 1-based position in the request
    code: int
    segment_id: str  # empty when the item named none
    failure: ItemFailure | None = None  # None on success
