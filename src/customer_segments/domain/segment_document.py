"""A segment as the JSON document of the Emporix REST API, and JSON Patch (RFC 6902) on it.

The REST gateway reads request bodies into these models. The service applies a PATCH to the
same document on the server, in the transaction that writes it, so that a PATCH needs only the
write scope (the gateway would have to read the segment first, with the caller's token).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple

import jsonpatch
from jsonpatch import JsonPatchException, JsonPatchPathNotFound
from jsonpointer import JsonPointer, JsonPointerException
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
from customer_segments.domain.errors import InvalidArgument, over_limit
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
        if self.op not in ("add", "replace"):  # no value; an unknown op is refused by its name
            return PatchOperation(self.op, self.path)
        value = validation.json_value(self.value_json, f"operations[{number}].value_json")
        return PatchOperation(self.op, self.path, value)


PATCH_OPERATIONS = ("add", "remove", "replace")
# What a caller may patch, by the first parts of the path: not the document as a whole, its id
# or its output-only metadata (version, createdAt, modifiedAt); only metadata.mixins of it.
_PATCHABLE = (
    ("name",),
    ("description",),
    ("validity",),
    ("status",),
    ("siteCode",),
    ("mixins",),
    ("metadata", "mixins"),
)
_PATCHABLE_NAMES = ", ".join("/" + "/".join(prefix) for prefix in _PATCHABLE)


def patched_fields(segment: Segment, operations: Sequence[PatchOperation]) -> SegmentFields:
    """What the segment becomes after `operations`, all of them or none; the fields of
    problems are named `operations[n].op`/`.path` (1-based) or after the document's fields."""
    document = _document(segment)
    for number, operation in enumerate(operations, start=1):
        document = _apply(document, operation, f"operations[{number}]")
    # Before anything recursive sees the result: a long path nests as deep as it has parts.
    metadata = document.get("metadata")
    for name, value in (
        ("mixins", document.get("mixins")),
        ("metadata.mixins", metadata.get("mixins") if isinstance(metadata, dict) else None),
    ):
        if validation.nested_deeper_than(value, validation.MAX_JSON_DEPTH):
            raise over_limit(name, validation.TOO_DEEP)
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
    """The writable part of the segment, as GET shows it, but with every object member present
    (empty if unset), so that an `add` of one of its members has a parent (RFC 6902, 4.1)."""
    document: dict[str, Any] = {
        "name": dict(segment.name),
        "description": dict(segment.description),
        "status": segment.status.value,
        "siteCode": segment.site_code,
        "mixins": _copy(segment.mixins),
        "metadata": {"mixins": _copy(segment.metadata_mixins)},
    }
    document["validity"] = {
        name: moment.isoformat()
        for name, moment in (("from", segment.validity_from), ("to", segment.validity_to))
        if moment is not None
    }
    return document


def _copy(document: dict[str, Any]) -> dict[str, Any]:
    """A copy through the JSON codec, one C frame per level: copy.deepcopy takes two Python
    frames per level and fails on a document stored deeper than the limit before it existed."""
    copied: dict[str, Any] = validation.parse_json(validation.dump_json(document))
    return copied


def _apply(document: dict[str, Any], operation: PatchOperation, where: str) -> dict[str, Any]:
    """The document after one operation (RFC 6902, by jsonpatch), changed in place."""
    if operation.op not in PATCH_OPERATIONS:
        raise InvalidArgument(f"{where}.op", f"must be one of {', '.join(PATCH_OPERATIONS)}")
    try:
        parts = JsonPointer(operation.path).parts
    except JsonPointerException as error:
        raise InvalidArgument(f"{where}.path", f"is not a JSON pointer ({error})") from None
    if not any(tuple(parts[: len(prefix)]) == prefix for prefix in _PATCHABLE):
        raise InvalidArgument(
            f"{where}.path", f"cannot patch '{operation.path}' (patchable: {_PATCHABLE_NAMES})"
        )
    member: dict[str, Any] = {"op": operation.op, "path": operation.path}
    if operation.op != "remove":
        member["value"] = operation.value
    try:
        # In place: the document is already a copy, and deepcopy recurses twice per level.
        patched: dict[str, Any] = jsonpatch.JsonPatch([member]).apply(document, in_place=True)
    except (JsonPatchException, JsonPointerException) as error:
        raise InvalidArgument(f"{where}.path", _refusal(operation.path, error)) from None
    return patched


def _refusal(path: str, error: Exception) -> str:
    """The reason first: a long path is cut short in the error message."""
    reason = str(error)
    if isinstance(error, JsonPatchPathNotFound):
        return f"does not exist: '{path}'"
    # jsonpointer's "member 'x' not found in {...}" would quote the whole parent document.
    if " not found in " in reason:
        return f"its parent does not exist: '{path}'"
    return f"{reason}: '{path}'"
