"""REST field paths <-> proto field paths: the one table of how the gateway names the fields of
the REST bodies in the messages of the gRPC API. A REST `fields` parameter is translated
through it into the request's FieldMask (AIP-157 `read_mask`), and the server projects
(requests.read_mask). Tables only, no imports of the gateway: errors.py may read them too.

Mixins are JSON text in the messages (`mixins_json`), so they are selected as a whole: a path
into them (`mixins.tier`) has no proto counterpart.
"""

from __future__ import annotations

_METADATA = {
    "metadata": "metadata",
    "metadata.createdAt": "metadata.created_at",
    "metadata.modifiedAt": "metadata.modified_at",
    "metadata.version": "metadata.version",
    "metadata.mixins": "metadata.mixins_json",
}

# REST path of an assignment body -> path of the Assignment message.
ASSIGNMENT_FIELDS = {
    "customer": "customer",
    "customer.id": "customer.id",
    "customer.firstName": "customer.first_name",
    "customer.lastName": "customer.last_name",
    "customer.email": "customer.email",
    "legalEntity": "legal_entity",
    "legalEntity.id": "legal_entity.id",
    "legalEntity.name": "legal_entity.name",
    "assignmentType": "assignment_type",
    "mixins": "mixins_json",
} | _METADATA

# REST path of a segment body -> path of the Segment message.
SEGMENT_FIELDS = {
    "id": "id",
    "name": "name",
    "description": "description",
    "validity": "validity",
    "validity.from": "validity.from",
    "validity.to": "validity.to",
    "status": "status",
    "siteCode": "site_code",
    "mixins": "mixins_json",
} | _METADATA
