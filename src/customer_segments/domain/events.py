"""Change events: their types and their payloads exactly as Emporix publishes them
(webhooks/events-customer-segment), as pure functions of the domain objects.

Keys are absent rather than null where a value is unknown (a customer the directory does not
know has only its `id`; a B2C assignment has no `legalEntity`); instants read as the REST body
writes them (ISO 8601 in UTC, milliseconds, Z)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from customer_segments.domain.assignment import Assignment, AssignmentKey
from customer_segments.domain.segment import Segment, SegmentStatus


class EventType(StrEnum):
    ASSIGNMENT_CREATED = "customer-segment.customer-assignment-created"
    ASSIGNMENT_UPDATED = "customer-segment.customer-assignment-updated"
    ASSIGNMENT_DELETED = "customer-segment.customer-assignment-deleted"
    SEGMENT_CREATED = "customer-segment.segment-created"
    SEGMENT_UPDATED = "customer-segment.segment-updated"
    SEGMENT_DELETED = "customer-segment.segment-deleted"


EVENT_TYPES = frozenset(EventType)


def instant(moment: datetime) -> str:
    """As the REST body writes it: 2024-10-12T12:00:00.000Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def message(event_type: str, occurred_at: datetime, payload: dict[str, Any]) -> str:
    """An event as webhooks POST it and NATS carries it, the way Emporix posts it: its type,
    when it happened, and its payload."""
    body = {"type": event_type, "timestamp": instant(occurred_at), "data": payload}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _metadata(created_at: datetime, modified_at: datetime, version: int) -> dict[str, Any]:
    return {
        "createdAt": instant(created_at),
        "modifiedAt": instant(modified_at),
        "version": version,
    }


def _present(values: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}


def assignment_written(tenant: str, assignment: Assignment) -> dict[str, Any]:
    """The payload of customer-assignment-created and -updated (the same shape)."""
    customer, legal_entity = assignment.customer, assignment.legal_entity
    return assignment_payload(
        tenant,
        assignment.segment_id,
        assignment.assignment_type.value,
        (customer.id, customer.first_name, customer.last_name, customer.email),
        None if legal_entity is None else (legal_entity.id, legal_entity.name),
        (instant(assignment.created_at), instant(assignment.modified_at), assignment.version),
        assignment.mixins,
    )


def assignment_payload(
    tenant: str,
    segment_id: str,
    assignment_type: str,
    customer: tuple[str, str | None, str | None, str | None],
    legal_entity: tuple[str, str | None] | None,
    metadata: tuple[str, str, int],
    mixins: dict[str, Any],
) -> dict[str, Any]:
    """`assignment_written` from its parts: `customer` (id, first name, last name, email),
    `legal_entity` (id, name; None for B2C), `metadata` (created and modified as `instant`
    writes them, version). For the outbox's batches, which read thousands at a time without
    building an Assignment for each."""
    customer_id, first_name, last_name, email = customer
    payload: dict[str, Any] = {
        "tenant": tenant,
        "segmentId": segment_id,
        "assignmentType": assignment_type,
        "customer": _present(
            {"id": customer_id, "firstName": first_name, "lastName": last_name, "email": email}
        ),
    }
    if legal_entity is not None:
        payload["legalEntity"] = _present({"id": legal_entity[0], "name": legal_entity[1]})
    created_at, modified_at, version = metadata
    payload["metadata"] = {"createdAt": created_at, "modifiedAt": modified_at, "version": version}
    payload["mixins"] = mixins
    return payload


def assignment_event_type(assignment: Assignment) -> EventType:
    """Created for a fresh row (version 1), updated for every later write, changed or not."""
    if assignment.version == 1:
        return EventType.ASSIGNMENT_CREATED
    return EventType.ASSIGNMENT_UPDATED


def assignment_deleted(key: AssignmentKey) -> dict[str, Any]:
    payload = {"tenant": key.tenant, "segmentId": key.segment_id, "customerId": key.customer_id}
    if key.legal_entity_id:  # absent for B2C
        payload["legalEntityId"] = key.legal_entity_id
    return payload


def segment_created(tenant: str, segment: Segment) -> dict[str, Any]:
    validity = _present(
        {
            "from": None if segment.validity_from is None else instant(segment.validity_from),
            "to": None if segment.validity_to is None else instant(segment.validity_to),
        }
    )
    return {
        "tenant": tenant,
        "id": segment.id,
        "name": segment.name,
        "description": segment.description,
        "siteCode": segment.site_code,
        "status": segment.status.value,
        "validity": validity,
        "metadata": _metadata(segment.created_at, segment.modified_at, segment.version),
    }


def segment_updated(
    tenant: str, segment: Segment, previous_status: SegmentStatus
) -> dict[str, Any]:
    return segment_created(tenant, segment) | {
        "mixins": segment.mixins,
        "previousStatus": previous_status.value,
    }


def segment_deleted(tenant: str, segment_id: str) -> dict[str, Any]:
    return {"tenant": tenant, "id": segment_id}
