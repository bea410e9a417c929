"""Request bodies, mirroring the documented schemas. Unknown fields are ignored, as Emporix
does; a wrong type is a 400 that names the field."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# Versions are int64 in the service, and start at 1.
Version = Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]


class MetadataUpdate(_Body):
    version: Version | None = None
    mixins: dict[str, Any] | None = None


class CustomerAssignmentUpsert(_Body):
    mixins: dict[str, Any] | None = None
    metadata: MetadataUpdate | None = None


class CustomerAssignmentUpsertBulk(CustomerAssignmentUpsert):
    customer_id: StrictStr | None = Field(None, alias="customerId")
    legal_entity_id: StrictStr | None = Field(None, alias="legalEntityId")


class CustomerAssignmentRemoveBulk(_Body):
    customer_id: StrictStr | None = Field(None, alias="customerId")
    legal_entity_id: StrictStr | None = Field(None, alias="legalEntityId")


class Search(_Body):
    q: StrictStr | None = None


class Validity(_Body):
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None


class SegmentUpsert(_Body):
    """CommonSegment of the Emporix file: what a create or an upsert writes."""

    name: dict[str, StrictStr]
    description: dict[str, StrictStr] | None = None
    validity: Validity | None = None
    status: Literal["ACTIVE", "INACTIVE"] | None = None
    site_code: StrictStr = Field(alias="siteCode")
    mixins: dict[str, Any] | None = None
    metadata: MetadataUpdate | None = None


class SegmentCreation(SegmentUpsert):
    id: StrictStr | None = None


class PatchOperation(_Body):
    op: Literal["add", "remove", "replace"]
    path: StrictStr
    value: Any = None
