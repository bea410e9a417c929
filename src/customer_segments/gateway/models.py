"""Request bodies, mirroring the documented schemas. Unknown fields are ignored, as Emporix
does; a wrong type is a 400 that names the field. The segment document is the domain's: the
service applies patches to it too."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictStr

from customer_segments.domain.segment_document import (
    DocumentModel,
    MetadataUpdate,
    SegmentDocument,
)


class CustomerAssignmentUpsert(DocumentModel):
    mixins: dict[str, Any] | None = None
    metadata: MetadataUpdate | None = None


class CustomerAssignmentUpsertBulk(CustomerAssignmentUpsert):
    customer_id: StrictStr | None = Field(None, alias="customerId")
    legal_entity_id: StrictStr | None = Field(None, alias="legalEntityId")


class CustomerAssignmentRemoveBulk(DocumentModel):
    customer_id: StrictStr | None = Field(None, alias="customerId")
    legal_entity_id: StrictStr | None = Field(None, alias="legalEntityId")


class Search(DocumentModel):
    q: StrictStr | None = None


class SegmentCreation(SegmentDocument):
    id: StrictStr | None = None


class PatchOperation(DocumentModel):
    op: Literal["add", "remove", "replace"]
    path: StrictStr
    value: Any = None
