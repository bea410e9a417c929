"""Domain types <-> protobuf messages. No business rules, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

from customersegment.v1 import assignment_pb2, common_pb2, segment_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.timestamp_pb2 import Timestamp

from customer_segments.domain.assignment import Assignment, AssignmentType, BulkItemResult
from customer_segments.domain.errors import InvalidArgument, ItemFailure
from customer_segments.domain.segment import BulkSegmentResult, Segment, SegmentStatus
from customer_segments.domain.validation import dump_json

_ASSIGNMENT_TYPES = {
    AssignmentType.MANUAL: assignment_pb2.ASSIGNMENT_TYPE_MANUAL,
    AssignmentType.AUTOMATIC: assignment_pb2.ASSIGNMENT_TYPE_AUTOMATIC,
}
_SEGMENT_STATUSES = {
    SegmentStatus.ACTIVE: segment_pb2.SEGMENT_STATUS_ACTIVE,
    SegmentStatus.INACTIVE: segment_pb2.SEGMENT_STATUS_INACTIVE,
}
SEGMENT_STATUS_FROM_PROTO = {proto: status for status, proto in _SEGMENT_STATUSES.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(moment: datetime) -> Timestamp:
    """What Timestamp.FromDatetime gives (a naive moment is UTC), from the difference to the
    epoch: FromDatetime goes through utctimetuple() and calendar.timegm() in Python, the
    larger part of building a segment's message (four per segment of a list). Every datetime
    is within Timestamp's range (years 1 to 9999), so nothing needs checking."""
    epoch = _NAIVE_EPOCH if moment.utcoffset() is None else _EPOCH
    delta = moment - epoch
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def moment(message: Timestamp, field: str) -> datetime:
    try:
        return message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "is not a valid timestamp") from None


def _json(value: Mapping[str, Any]) -> str:
    return dump_json(dict(value)) if value else "{}"


def assignment_to_proto(assignment: Assignment) -> assignment_pb2.Assignment:
    customer = assignment.customer
    message = assignment_pb2.Assignment(
        segment_id=assignment.segment_id,
        customer=assignment_pb2.Customer(
            id=customer.id,
            first_name=customer.first_name or "",
            last_name=customer.last_name or "",
            email=customer.email or "",
        ),
        assignment_type=_ASSIGNMENT_TYPES[assignment.assignment_type],
        mixins_json=_json(assignment.mixins),
        metadata=assignment_pb2.AssignmentMetadata(
            created_at=timestamp(assignment.created_at),
            modified_at=timestamp(assignment.modified_at),
            version=assignment.version,
            mixins_json=_json(assignment.metadata_mixins),
        ),
    )
    if assignment.legal_entity is not None:
        message.legal_entity.id = assignment.legal_entity.id
        message.legal_entity.name = assignment.legal_entity.name or ""
    return message


def segment_to_proto(segment: Segment) -> segment_pb2.Segment:
    message = segment_pb2.Segment(
        id=segment.id,
        name=segment.name,
        description=segment.description,
        status=_SEGMENT_STATUSES[segment.status],
        site_code=segment.site_code,
        mixins_json=_json(segment.mixins),
        metadata=segment_pb2.SegmentMetadata(
            created_at=timestamp(segment.created_at),
            modified_at=timestamp(segment.modified_at),
            version=segment.version,
            mixins_json=_json(segment.metadata_mixins),
        ),
    )
    if segment.validity_from is not None:
        message.validity.start_time.CopyFrom(timestamp(segment.validity_from))
    if segment.validity_to is not None:
        message.validity.end_time.CopyFrom(timestamp(segment.validity_to))
    return message


class SegmentMessages:
    """The message of each segment read, built once per state of the segment: the segments of a
    customer are asked on every price lookup, and building their messages was the larger part
    of the call's own work (five segments, four timestamps and two JSON texts each).

    A state is (tenant, id, version, created_at, modified_at): every write of a segment adds
    1 to its version and sets modified_at, and a segment deleted and created again has another
    created_at. The messages are shared: never change one (a response built from one copies
    it). At most `entries` are kept; then the cache starts again empty."""

    def __init__(self, entries: int = 10_000) -> None:
        self._entries = entries
        self._built: dict[tuple[str, str, int, datetime, datetime], segment_pb2.Segment] = {}

    def of(self, tenant: str, segment: Segment) -> segment_pb2.Segment:
        key = (tenant, segment.id, segment.version, segment.created_at, segment.modified_at)
        message = self._built.get(key)
        if message is None:
            if len(self._built) >= self._entries:
                self._built.clear()
            message = self._built[key] = segment_to_proto(segment)
        return message


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


_Result = TypeVar("_Result", common_pb2.BulkItemResult, segment_pb2.BulkSegmentResult)


def _with_failure(message: _Result, failure: ItemFailure | None) -> _Result:
    """The item's failure, in the fields both bulk result messages share."""
    if failure is not None:
        message.message = failure.message
        message.reason = failure.reason
        message.field = failure.field
        message.field_description = failure.problem
    return message


def add_bulk_results(
    into: RepeatedCompositeFieldContainer[common_pb2.BulkItemResult],
    results: list[BulkItemResult],
) -> None:
    """The results, added to a bulk response's repeated field: built in place, field by field
    (a message built apart and then added is copied, and keyword arguments cost more), and
    without the fields that stay empty (a B2C item's legal entity, a success's failure)."""
    add = into.add
    for result in results:
        message = add()
        message.index = result.index
        message.code = result.code
        message.status = _PHRASES[result.code]
        message.customer_id = result.customer_id
        if result.legal_entity_id:
            message.legal_entity_id = result.legal_entity_id
        if result.failure is not None:
            _with_failure(message, result.failure)


def bulk_segment_result_to_proto(result: BulkSegmentResult) -> segment_pb2.BulkSegmentResult:
    message = segment_pb2.BulkSegmentResult(
        index=result.index,
        code=result.code,
        status=_PHRASES[result.code],
        segment_id=result.segment_id,
    )
    return _with_failure(message, result.failure)
