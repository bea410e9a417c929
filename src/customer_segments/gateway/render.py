"""Protobuf answers -> the JSON bodies Emporix documents (camelCase, ISO 8601 with ms and Z)."""

from __future__ import annotations

import json
import time
from typing import Any

from customersegment.v1 import assignment_pb2, common_pb2, segment_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from customer_segments.gateway.errors import field_message

# The proto's enum values carry these prefixes; REST's do not (SEGMENT_STATUS_ACTIVE is ACTIVE).
ASSIGNMENT_TYPE_PREFIX = "ASSIGNMENT_TYPE_"
SEGMENT_STATUS_PREFIX = "SEGMENT_STATUS_"


def timestamp(value: Timestamp) -> str:
    """ISO 8601 in UTC with milliseconds and Z. Straight from the seconds: a datetime and
    strftime cost 15 us per field on the hot GET path (measured), and one %-format of the
    struct_time's first six fields costs less than an f-string's six format specs."""
    return _SECONDS % time.gmtime(value.seconds)[:6] + _MILLISECONDS % (value.nanos // 1_000_000)


_SECONDS = "%04d-%02d-%02dT%02d:%02d:%02d"
_MILLISECONDS = ".%03dZ"


def _json_object(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text) if text else {}
    return value


# What is rendered is what the message holds: a full one from the service, or the fields of a
# read mask (REST `fields`, projected by the service). An absent field is a zero value, which a
# stored object never has where it is rendered (ids, names, types, versions, timestamps), and
# a part left empty is left out.


def assignment(message: assignment_pb2.Assignment) -> dict[str, Any]:
    body: dict[str, Any] = {}
    given = message.customer  # each access of a sub-message builds a wrapper: once
    customer = _present(
        (
            ("id", given.id),
            ("firstName", given.first_name),
            ("lastName", given.last_name),
            ("email", given.email),
        )
    )  # unknown to the directory: just the id
    if customer:
        body["customer"] = customer
    if message.HasField("legal_entity"):
        entity = message.legal_entity
        legal_entity = _present((("id", entity.id), ("name", entity.name)))
        if legal_entity:
            body["legalEntity"] = legal_entity
    if message.assignment_type:
        body["assignmentType"] = assignment_pb2.AssignmentType.Name(
            message.assignment_type
        ).removeprefix(ASSIGNMENT_TYPE_PREFIX)
    _add_mixins_and_metadata(body, message)
    return body


def _present(values: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {key: value for key, value in values if value}


def _add_mixins_and_metadata(
    body: dict[str, Any], message: assignment_pb2.Assignment | segment_pb2.Segment
) -> None:
    """`mixins` (when any) and `metadata`, which assignments and segments render alike."""
    mixins = _json_object(message.mixins_json)
    if mixins:
        body["mixins"] = mixins
    if not message.HasField("metadata"):
        return
    given = message.metadata
    metadata: dict[str, Any] = {}
    if given.HasField("created_at"):
        metadata["createdAt"] = timestamp(given.created_at)
    if given.HasField("modified_at"):
        metadata["modifiedAt"] = timestamp(given.modified_at)
    if given.version:
        metadata["version"] = given.version
    metadata_mixins = _json_object(given.mixins_json)
    if metadata_mixins:
        metadata["mixins"] = metadata_mixins
    if metadata:
        body["metadata"] = metadata


def bulk_result(
    result: common_pb2.BulkItemResult | segment_pb2.BulkSegmentResult, index: int
) -> dict[str, Any]:
    """An item's failure that names a field reads as a single call's 400 would: the field by
    its REST name (`mixins: must be a JSON object`)."""
    body: dict[str, Any] = {"index": index, "code": result.code, "status": result.status}
    if result.field:
        body["message"] = field_message(result.field, result.field_description)
    elif result.message:
        body["message"] = result.message
    return body


def segment_bulk_result(result: segment_pb2.BulkSegmentResult, index: int) -> dict[str, Any]:
    body = bulk_result(result, index)
    if result.segment_id:
        body["id"] = result.segment_id
    return body


def segment(message: segment_pb2.Segment) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if message.id:
        body["id"] = message.id
    if message.name:
        body["name"] = dict(message.name)
    if message.description:
        body["description"] = dict(message.description)
    validity: dict[str, str] = {}
    if message.validity.HasField("start_time"):
        validity["from"] = timestamp(message.validity.start_time)
    if message.validity.HasField("end_time"):
        validity["to"] = timestamp(message.validity.end_time)
    if validity:
        body["validity"] = validity
    if message.status:
        body["status"] = segment_pb2.SegmentStatus.Name(message.status).removeprefix(
            SEGMENT_STATUS_PREFIX
        )
    if message.site_code:
        body["siteCode"] = message.site_code
    _add_mixins_and_metadata(body, message)
    return body
