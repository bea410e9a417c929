"""Customer assignments: which customer (B2C, or for a B2B legal entity) belongs to a segment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict

from customer_segments.domain import validation
from customer_segments.domain.errors import InvalidArgument, ItemFailure


class AssignmentType(StrEnum):
    MANUAL = "MANUAL"  # made through this API
    AUTOMATIC = "AUTOMATIC"  # reserved for assignments made by rules


class AssignmentKey(NamedTuple):
    """The identity of an assignment; legal_entity_id is "" for B2C. Tenant first, always."""

    tenant: str
    segment_id: str
    customer_id: str
    legal_entity_id: str

    @classmethod
    def parse(
        cls, tenant: str, segment_id: str, customer_id: str, legal_entity_id: str
    ) -> AssignmentKey:
        return cls(
            validation.tenant(tenant),
            validation.identifier(segment_id, "segment_id"),
            validation.identifier(customer_id, "customer_id"),
            validation.optional_identifier(legal_entity_id, "legal_entity_id"),
        )

    @property
    def display_id(self) -> str:
        """How error messages name the assignment."""
        if self.legal_entity_id:
            return f"{self.customer_id} (legal entity {self.legal_entity_id})"
        return self.customer_id


def is_creation(version: int) -> bool:
    """An insert writes version 1 and every update adds 1, so only a fresh row has version 1."""
    return version == 1


class AssignmentWrite(NamedTuple):
    """What an upsert stores: mixins and metadata.mixins replace the stored ones as a whole.

    A NamedTuple rather than a pydantic model: bulk imports make one per item, and `parse`
    below is where its fields are validated.
    """

    key: AssignmentKey
    mixins: dict[str, Any]
    metadata_mixins: dict[str, Any]
    # The same documents as validated JSON text, for statements that take JSON as text.
    mixins_json: str
    metadata_mixins_json: str
    # Optimistic locking: write only if the stored version equals it; None writes unconditionally.
    expected_version: int | None

    @classmethod
    def parse(
        cls,
        key: AssignmentKey,
        mixins_json: str,
        metadata_mixins_json: str,
        expected_version: int | None,
    ) -> AssignmentWrite:
        if expected_version is not None and expected_version < 1:
            raise InvalidArgument("version", "must be at least 1")
        return cls(
            key,
            validation.json_object(mixins_json, "mixins_json"),
            validation.json_object(metadata_mixins_json, "metadata_mixins_json"),
            mixins_json or "{}",
            metadata_mixins_json or "{}",
            expected_version,
        )


class CustomerInfo(BaseModel):
    """Display data from the customer directory; None fields are unknown to the directory."""

    model_config = ConfigDict(frozen=True)

    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


class LegalEntityInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None = None


class Assignment(BaseModel):
    model_config = ConfigDict(frozen=True)

    segment_id: str
    customer: CustomerInfo
    legal_entity: LegalEntityInfo | None  # None for B2C
    assignment_type: AssignmentType
    mixins: dict[str, Any]
    metadata_mixins: dict[str, Any]
    version: int
    created_at: datetime
    modified_at: datetime


class UpsertOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    created: bool
    assignment: Assignment


@dataclass(slots=True)
class BulkItemResult:
    """One item's outcome in a bulk call: the HTTP code it would have got alone.

    Not frozen, though never changed: bulk calls make one per item, and a frozen dataclass's
    __init__ (object.__setattr__ per field) costs five times a plain one's (1.06 against
    0.22 us)."""

    index: int  # 1-based position in the whole request
    code: int
    customer_id: str
    legal_entity_id: str
    failure: ItemFailure | None = None  # None on success


class BulkUpsertInput(NamedTuple):
    """A bulk item as the caller sent it, before validation (validation is per item)."""

    customer_id: str
    legal_entity_id: str
    mixins_json: str
    metadata_mixins_json: str
    version: int | None


class BulkRemoveInput(NamedTuple):
    customer_id: str
    legal_entity_id: str


BulkInput = TypeVar("BulkInput")


class Batch(NamedTuple, Generic[BulkInput]):
    """The items of a bulk call as one request message brought them. The first batch names
    the call's tenant and segment; a later one (a message of a stream) repeats them or leaves
    them empty."""

    items: Sequence[BulkInput]
    tenant: str = ""
    segment_id: str = ""
