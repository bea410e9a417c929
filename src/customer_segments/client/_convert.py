"""The client's types <-> the protobuf messages. Every use of a proto name (message, field,
enum value, service) in the client is here, so that a change of the protos is a change of
this module only. No I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from customersegment.v1 import (
    assignment_pb2,
    assignment_pb2_grpc,
    directory_pb2,
    directory_pb2_grpc,
    segment_pb2,
    segment_pb2_grpc,
)
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from customer_segments.client.types import (
    Assignment,
    AssignmentListing,
    AssignmentPage,
    AssignmentType,
    BulkItemResult,
    BulkRemoveItem,
    BulkSegmentItem,
    BulkSegmentResult,
    BulkUpsertItem,
    Customer,
    LegalEntity,
    Listing,
    Metadata,
    PatchOperation,
    Segment,
    SegmentFields,
    SegmentPage,
    SegmentStatus,
    UpsertedAssignment,
    UpsertedSegment,
)

ASSIGNMENT_SERVICE = "customersegment.v1.CustomerAssignmentService"
SEGMENT_SERVICE = "customersegment.v1.SegmentService"
DIRECTORY_SERVICE = "customersegment.v1.DirectoryService"

# The RPCs a retry cannot make worse (SPEC: PUT semantics, idempotent removal, reads).
# CreateSegment (ALREADY_EXISTS on a retry that follows a success), PatchSegment (an add to
# an array applies twice), DeleteSegment (NOT_FOUND after a success) are not among them, nor
# the Stream* calls, whose retry would buffer the caller's whole input.
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    ASSIGNMENT_SERVICE: (
        "GetAssignment",
        "UpsertAssignment",
        "RemoveAssignment",
        "ListAssignments",
        "SearchAssignments",
        "BulkUpsertAssignments",
        "BulkRemoveAssignments",
    ),
    SEGMENT_SERVICE: ("GetSegment", "ListSegments", "UpsertSegment", "BulkUpsertSegments"),
    DIRECTORY_SERVICE: ("UpsertCustomer", "UpsertLegalEntity"),
}


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.assignments = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
        self.segments = segment_pb2_grpc.SegmentServiceStub(channel)
        self.directory = directory_pb2_grpc.DirectoryServiceStub(channel)


_ASSIGNMENT_TYPES = {
    assignment_pb2.ASSIGNMENT_TYPE_UNSPECIFIED: AssignmentType.UNSPECIFIED,
    assignment_pb2.ASSIGNMENT_TYPE_MANUAL: AssignmentType.MANUAL,
    assignment_pb2.ASSIGNMENT_TYPE_AUTOMATIC: AssignmentType.AUTOMATIC,
}
_SEGMENT_STATUSES = {
    segment_pb2.SEGMENT_STATUS_UNSPECIFIED: SegmentStatus.UNSPECIFIED,
    segment_pb2.SEGMENT_STATUS_ACTIVE: SegmentStatus.ACTIVE,
    segment_pb2.SEGMENT_STATUS_INACTIVE: SegmentStatus.INACTIVE,
}
_SEGMENT_STATUSES_TO_PROTO = {status: proto for proto, status in _SEGMENT_STATUSES.items()}


# Mixins travel as JSON text so that integers stay integers; callers see dicts.
def _json_text(value: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False) if value else ""


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def _moment(message: Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def _timestamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


def _field_mask(fields: Sequence[str] | None) -> FieldMask | None:
    return FieldMask(paths=list(fields)) if fields else None


def _metadata(
    message: assignment_pb2.AssignmentMetadata | segment_pb2.SegmentMetadata,
) -> Metadata:
    return Metadata(
        created_at=_moment(message.created_at) if message.HasField("created_at") else None,
        modified_at=_moment(message.modified_at) if message.HasField("modified_at") else None,
        version=message.version,
        mixins=_json_object(message.mixins_json),
    )


# Assignments --------------------------------------------------------------------------------


def get_assignment_request(
    tenant: str, segment_id: str, customer_id: str, legal_entity_id: str
) -> assignment_pb2.GetAssignmentRequest:
    return assignment_pb2.GetAssignmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        customer_id=customer_id,
        legal_entity_id=legal_entity_id,
    )


def upsert_assignment_request(
    tenant: str,
    segment_id: str,
    customer_id: str,
    legal_entity_id: str,
    mixins: Mapping[str, Any] | None,
    metadata_mixins: Mapping[str, Any] | None,
    version: int | None,
    must_exist: bool,
) -> assignment_pb2.UpsertAssignmentRequest:
    return assignment_pb2.UpsertAssignmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        customer_id=customer_id,
        legal_entity_id=legal_entity_id,
        mixins_json=_json_text(mixins),
        metadata_mixins_json=_json_text(metadata_mixins),
        version=version,
        must_exist=must_exist,
    )


def remove_assignment_request(
    tenant: str,
    segment_id: str,
    customer_id: str,
    legal_entity_id: str,
    version: int | None,
    must_exist: bool,
) -> assignment_pb2.RemoveAssignmentRequest:
    return assignment_pb2.RemoveAssignmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        customer_id=customer_id,
        legal_entity_id=legal_entity_id,
        version=version,
        must_exist=must_exist,
    )


def _paging(listing: Listing) -> dict[str, Any]:
    """The paging fields of a list request: the keys of Listing are the proto's field names."""
    return {
        "q": listing.get("q", ""),
        "sort": listing.get("sort", ""),
        "page_size": listing.get("page_size", 0),
        "page_number": listing.get("page_number", 0),
        "page_token": listing.get("page_token") or "",
        "include_total_count": listing.get("include_total_count", False),
    }


def list_assignments_request(
    tenant: str, segment_id: str, listing: AssignmentListing
) -> assignment_pb2.ListAssignmentsRequest:
    return assignment_pb2.ListAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        fields=_field_mask(listing.get("fields")),
        **_paging(listing),
    )


def search_assignments_request(
    tenant: str, segment_id: str, listing: AssignmentListing
) -> assignment_pb2.SearchAssignmentsRequest:
    return assignment_pb2.SearchAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        fields=_field_mask(listing.get("fields")),
        **_paging(listing),
    )


def bulk_upsert_request(
    tenant: str, segment_id: str, items: Iterable[BulkUpsertItem]
) -> assignment_pb2.BulkUpsertAssignmentsRequest:
    return assignment_pb2.BulkUpsertAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        items=[
            assignment_pb2.BulkUpsertItem(
                customer_id=item.customer_id,
                legal_entity_id=item.legal_entity_id,
                mixins_json=_json_text(item.mixins),
                metadata_mixins_json=_json_text(item.metadata_mixins),
                version=item.version,
            )
            for item in items
        ],
    )


def bulk_remove_request(
    tenant: str, segment_id: str, items: Iterable[BulkRemoveItem]
) -> assignment_pb2.BulkRemoveAssignmentsRequest:
    return assignment_pb2.BulkRemoveAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        items=[
            assignment_pb2.BulkRemoveItem(
                customer_id=item.customer_id, legal_entity_id=item.legal_entity_id
            )
            for item in items
        ],
    )


def stream_upsert_request(
    tenant: str, segment_id: str, items: Iterable[BulkUpsertItem]
) -> assignment_pb2.StreamUpsertAssignmentsRequest:
    return assignment_pb2.StreamUpsertAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        items=bulk_upsert_request(tenant, segment_id, items).items,
    )


def stream_remove_request(
    tenant: str, segment_id: str, items: Iterable[BulkRemoveItem]
) -> assignment_pb2.StreamRemoveAssignmentsRequest:
    return assignment_pb2.StreamRemoveAssignmentsRequest(
        tenant=tenant,
        segment_id=segment_id,
        items=bulk_remove_request(tenant, segment_id, items).items,
    )


def assignment(message: assignment_pb2.Assignment) -> Assignment:
    customer = message.customer
    legal_entity = None
    if message.HasField("legal_entity") and message.legal_entity.id:
        legal_entity = LegalEntity(message.legal_entity.id, message.legal_entity.name or None)
    return Assignment(
        segment_id=message.segment_id,
        customer=Customer(
            id=customer.id,
            first_name=customer.first_name or None,
            last_name=customer.last_name or None,
            email=customer.email or None,
        ),
        legal_entity=legal_entity,
        assignment_type=_ASSIGNMENT_TYPES.get(message.assignment_type, AssignmentType.UNSPECIFIED),
        mixins=_json_object(message.mixins_json),
        metadata=_metadata(message.metadata) if message.HasField("metadata") else None,
    )


def upserted_assignment(message: assignment_pb2.UpsertAssignmentResponse) -> UpsertedAssignment:
    return UpsertedAssignment(created=message.created, assignment=assignment(message.assignment))


def assignment_page(
    message: assignment_pb2.ListAssignmentsResponse, include_total_count: bool
) -> AssignmentPage:
    return AssignmentPage(
        assignments=tuple(assignment(item) for item in message.assignments),
        total_count=message.total_count if include_total_count else None,
        next_page_token=message.next_page_token or None,
        previous_page_token=message.previous_page_token or None,
    )


# Each bulk RPC answers a message of its own; all hold `results`.
BulkAnswer = (
    assignment_pb2.BulkUpsertAssignmentsResponse
    | assignment_pb2.BulkRemoveAssignmentsResponse
    | assignment_pb2.StreamUpsertAssignmentsResponse
    | assignment_pb2.StreamRemoveAssignmentsResponse
)


def bulk_results(message: BulkAnswer) -> list[BulkItemResult]:
    return [
        BulkItemResult(
            index=result.index,
            code=result.code,
            status=result.status,
            message=result.message,
            customer_id=result.customer_id,
            legal_entity_id=result.legal_entity_id,
            reason=result.reason,
            field=result.field,
        )
        for result in message.results
    ]


# Segments -----------------------------------------------------------------------------------


def segment_message(segment_id: str, fields: SegmentFields) -> segment_pb2.Segment:
    status = SegmentStatus(fields.get("status", SegmentStatus.INACTIVE))
    message = segment_pb2.Segment(
        id=segment_id,
        name=dict(fields["name"]),
        description=dict(fields.get("description") or {}),
        status=_SEGMENT_STATUSES_TO_PROTO[status],
        site_code=fields["site_code"],
        mixins_json=_json_text(fields.get("mixins")),
    )
    metadata_mixins = fields.get("metadata_mixins")
    if metadata_mixins:
        message.metadata.mixins_json = _json_text(metadata_mixins)
    valid_from, valid_to = fields.get("valid_from"), fields.get("valid_to")
    if valid_from is not None:
        message.validity.start_time.CopyFrom(_timestamp(valid_from))
    if valid_to is not None:
        message.validity.end_time.CopyFrom(_timestamp(valid_to))
    return message


def create_segment_request(
    tenant: str, segment: segment_pb2.Segment
) -> segment_pb2.CreateSegmentRequest:
    return segment_pb2.CreateSegmentRequest(tenant=tenant, segment=segment)


def upsert_segment_request(
    tenant: str,
    segment_id: str,
    segment: segment_pb2.Segment,
    version: int | None,
    must_exist: bool,
) -> segment_pb2.UpsertSegmentRequest:
    return segment_pb2.UpsertSegmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        segment=segment,
        version=version,
        must_exist=must_exist,
    )


def _patch_operation(
    operation: PatchOperation | Mapping[str, Any],
) -> segment_pb2.JsonPatchOperation:
    if not isinstance(operation, PatchOperation):
        operation = PatchOperation(
            op=operation.get("op", ""), path=operation.get("path", ""), value=operation.get("value")
        )
    value_json = "" if operation.op == "remove" else json.dumps(operation.value)
    return segment_pb2.JsonPatchOperation(
        op=operation.op, path=operation.path, value_json=value_json
    )


def patch_segment_request(
    tenant: str,
    segment_id: str,
    operations: Iterable[PatchOperation | Mapping[str, Any]],
    version: int | None,
) -> segment_pb2.PatchSegmentRequest:
    return segment_pb2.PatchSegmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        operations=[_patch_operation(operation) for operation in operations],
        version=version,
    )


def get_segment_request(tenant: str, segment_id: str) -> segment_pb2.GetSegmentRequest:
    return segment_pb2.GetSegmentRequest(tenant=tenant, segment_id=segment_id)


def list_segments_request(
    tenant: str, customer_id: str | None, legal_entity_id: str | None, listing: Listing
) -> segment_pb2.ListSegmentsRequest:
    return segment_pb2.ListSegmentsRequest(
        tenant=tenant,
        customer_id=customer_id or "",
        legal_entity_id=legal_entity_id or "",
        **_paging(listing),
    )


def delete_segment_request(
    tenant: str, segment_id: str, force: bool, version: int | None
) -> segment_pb2.DeleteSegmentRequest:
    return segment_pb2.DeleteSegmentRequest(
        tenant=tenant, segment_id=segment_id, force=force, version=version
    )


def segment(message: segment_pb2.Segment) -> Segment:
    validity = message.validity
    return Segment(
        id=message.id,
        name=dict(message.name),
        description=dict(message.description),
        status=_SEGMENT_STATUSES.get(message.status, SegmentStatus.UNSPECIFIED),
        site_code=message.site_code,
        valid_from=_moment(validity.start_time) if validity.HasField("start_time") else None,
        valid_to=_moment(validity.end_time) if validity.HasField("end_time") else None,
        mixins=_json_object(message.mixins_json),
        metadata=_metadata(message.metadata) if message.HasField("metadata") else None,
    )


def bulk_create_segments_request(
    tenant: str, items: Iterable[BulkSegmentItem]
) -> segment_pb2.BulkCreateSegmentsRequest:
    segments = []
    for item in items:
        if item.version is not None:
            raise ValueError("a segment that is created has no version to expect")
        segments.append(segment_message(item.segment_id, item.fields))
    return segment_pb2.BulkCreateSegmentsRequest(tenant=tenant, segments=segments)


def bulk_upsert_segments_request(
    tenant: str, items: Iterable[BulkSegmentItem]
) -> segment_pb2.BulkUpsertSegmentsRequest:
    return segment_pb2.BulkUpsertSegmentsRequest(
        tenant=tenant,
        items=[
            segment_pb2.BulkUpsertSegmentsItem(
                segment=segment_message(item.segment_id, item.fields), version=item.version
            )
            for item in items
        ],
    )


def bulk_delete_segments_request(
    tenant: str, segment_ids: Iterable[str], force: bool
) -> segment_pb2.BulkDeleteSegmentsRequest:
    return segment_pb2.BulkDeleteSegmentsRequest(
        tenant=tenant, segment_ids=list(segment_ids), force=force
    )


# Each segment bulk RPC answers a message of its own; all hold `results`.
BulkSegmentAnswer = (
    segment_pb2.BulkCreateSegmentsResponse
    | segment_pb2.BulkUpsertSegmentsResponse
    | segment_pb2.BulkDeleteSegmentsResponse
)


def bulk_segment_results(message: BulkSegmentAnswer) -> list[BulkSegmentResult]:
    return [
        BulkSegmentResult(
            index=result.index,
            code=result.code,
            status=result.status,
            message=result.message,
            segment_id=result.segment_id,
            reason=result.reason,
            field=result.field,
        )
        for result in message.results
    ]


def upserted_segment(message: segment_pb2.UpsertSegmentResponse) -> UpsertedSegment:
    return UpsertedSegment(created=message.created, segment=segment(message.segment))


def segment_page(
    message: segment_pb2.ListSegmentsResponse, include_total_count: bool
) -> SegmentPage:
    return SegmentPage(
        segments=tuple(segment(item) for item in message.segments),
        total_count=message.total_count if include_total_count else None,
        next_page_token=message.next_page_token or None,
        previous_page_token=message.previous_page_token or None,
    )


# Directory ----------------------------------------------------------------------------------


def upsert_customer_request(
    tenant: str, customer_id: str, first_name: str, last_name: str, email: str
) -> directory_pb2.UpsertCustomerRequest:
    return directory_pb2.UpsertCustomerRequest(
        tenant=tenant,
        customer_id=customer_id,
        first_name=first_name,
        last_name=last_name,
        email=email,
    )


def upsert_legal_entity_request(
    tenant: str, legal_entity_id: str, name: str
) -> directory_pb2.UpsertLegalEntityRequest:
    return directory_pb2.UpsertLegalEntityRequest(
        tenant=tenant, legal_entity_id=legal_entity_id, name=name
    )
