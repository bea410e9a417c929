"""A segment as the JSON document of the Emporix REST API, and JSON Patch (RFC 6902) on it.

The REST gateway reads request bodies into these models. The service applies a PATCH to the
same document on the server, in the transaction that writes it, so that a PATCH needs only the
write scope (the gateway would have to read the segment first, with the caller's token).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from customer_segments.domain import validation
from customer_segments.domain.errors import InvalidArgument
from customer_segments.domain.segment import Segment, SegmentFields, SegmentStatus, segment_fields


class DocumentModel(BaseModel):
    """Unknown fields are ignored, as Emporix does; a wrong type names its field."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# Versions are int64 in the service, and start at 1.
Version = Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]


class MetadataUpdate(DocumentModel):
    version: Version | None = None
    mixins: dict[str, Any] | None = None


class Validity(DocumentModel):
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None

    @field_validator("from_", "to")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        """In UTC, as stored; no offset means UTC (as in q). An offset can carry an instant out
        of the years 1 to 9999 (0001-01-01T00:00:00+14:00), which nothing can then hold."""
        if moment is None:
            return None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValueError("is before year 1 or after year 9999 in UTC") from None


class SegmentDocument(DocumentModel):
    """CommonSegment of the Emporix file: what a create, an upsert or a patch writes."""

    name: dict[str, StrictStr]
    description: dict[str, StrictStr] | None = None
    validity: Validity | None = None
    status: Literal["ACTIVE", "INACTIVE"] | None = None
    site_code: StrictStr = Field(alias="siteCode")
    mixins: dict[str, Any] | None = None
    metadata: MetadataUpdate | None = None


class PatchOperation(NamedTuple):
    op: str
    path: str
    value: Any = None


class PatchInput(NamedTuple):
    """A patch operation as the caller wrote it: the value as JSON text (none for remove)."""

    op: str
    path: str
    value_json: str = ""

    def parsed(self, number: int) -> PatchOperation:
        """`number`: the operation's 1-based position, which names it in errors."""
        if self.op == "remove":
            return PatchOperation(self.op, self.path)
        value = validation.json_value(self.value_json, f"operations[{number}].value_json")
        return PatchOperation(self.op, self.path, value)


PATCH_OPERATIONS = ("add", "remove", "replace")
# The document as a whole, its id and its output-only metadata are not the caller's to patch.
_UNPATCHABLE = ("/", "/id", "/metadata")


def patched_fields(segment: Segment, operations: Sequence[PatchOperation]) -> SegmentFields:
    """What the segment becomes after `operations`, all of them or none; the fields of
    problems are named `operations[n].op`/`.path` (1-based) or after the document's fields."""
    document = _document(segment)
    for number, operation in enumerate(operations, start=1):
        _apply(document, operation, f"operations[{number}]")
    # Before anything recursive sees the result: a long path nests as deep as it has parts.
    metadata = document.get("metadata")
    for name, value in (
        ("mixins", document.get("mixins")),
        ("metadata.mixins", metadata.get("mixins") if isinstance(metadata, dict) else None),
    ):
        if validation.nested_deeper_than(value, validation.MAX_JSON_DEPTH):
            raise InvalidArgument(name, validation.TOO_DEEP)
    try:
        patched = SegmentDocument.model_validate(document)
    except ValidationError as error:
        raise validation.from_pydantic(error) from None
    validity = patched.validity or Validity()
    return segment_fields(
        name=patched.name,
        description=patched.description or {},
        validity_from=validity.from_,
        validity_to=validity.to,
        status=SegmentStatus(patched.status) if patched.status else None,
        site_code=patched.site_code,
        mixins_json=validation.dump_json(patched.mixins or {}),
        metadata_mixins_json=validation.dump_json(
            (patched.metadata.mixins if patched.metadata else None) or {}
        ),
    )


def _document(segment: Segment) -> dict[str, Any]:
    """The writable part of the segment, as GET shows it."""
    document: dict[str, Any] = {
        "name": dict(segment.name),
        "description": dict(segment.description),
        "status": segment.status.value,
        "siteCode": segment.site_code,
        "mixins": _copy(segment.mixins),
        "metadata": {"mixins": _copy(segment.metadata_mixins)},
    }
    validity = {
        name: moment.isoformat()
        for name, moment in (("from", segment.validity_from), ("to", segment.validity_to))
        if moment is not None
    }
    if validity:
        document["validity"] = validity
    return document


def _copy(document: dict[str, Any]) -> dict[str, Any]:
    """A copy through the JSON codec, one C frame per level: copy.deepcopy takes two Python
    frames per level and fails on a document stored deeper than the limit before it existed."""
    copied: dict[str, Any] = validation.parse_json(validation.dump_json(document))
    return copied


def _apply(document: dict[str, Any], operation: PatchOperation, where: str) -> None:
    if operation.op not in PATCH_OPERATIONS:
        raise InvalidArgument(f"{where}.op", f"must be one of {', '.join(PATCH_OPERATIONS)}")
    if not operation.path.startswith("/") or operation.path in _UNPATCHABLE:
        raise InvalidArgument(f"{where}.path", f"cannot patch '{operation.path}'")
    parts = [part.replace("~1", "/").replace("~0", "~") for part in operation.path[1:].split("/")]
    parent: Any = document
    for part in parts[:-1]:
        if not isinstance(parent, dict):
            raise InvalidArgument(f"{where}.path", f"'{operation.path}' does not exist")
        parent = parent.setdefault(part, {}) if operation.op == "add" else parent.get(part)
    last = parts[-1]
    if not isinstance(parent, dict) or (operation.op != "add" and last not in parent):
        raise InvalidArgument(f"{where}.path", f"'{operation.path}' does not exist")
    if operation.op == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(operation.value)
