"""Trusted(Model) makes what Model.model_construct makes from every field (domain/trusted.py):
the store's rows become domain values through it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from customer_segments.domain.assignment import (
    Assignment,
    AssignmentType,
    CustomerInfo,
    LegalEntityInfo,
)
from customer_segments.domain.segment import Segment, SegmentStatus
from customer_segments.domain.trusted import Trusted

NOW = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
SEGMENT: dict[str, Any] = {
    "name": {"en": "Gold"},
    "description": {},
    "validity_from": None,
    "validity_to": NOW,
    "status": SegmentStatus.ACTIVE,
    "site_code": "main",
    "mixins": {"n": 20},
    "metadata_mixins": {},
    "id": "gold",
    "version": 3,
    "created_at": NOW,
    "modified_at": NOW,
}


def _same(made: BaseModel, constructed: BaseModel) -> None:
    assert made == constructed
    assert type(made) is type(constructed)
    assert made.__dict__ == constructed.__dict__
    assert made.model_fields_set == constructed.model_fields_set
    assert made.model_dump() == constructed.model_dump()
    assert made.model_dump(exclude_unset=True) == constructed.model_dump(exclude_unset=True)
    assert made.__pydantic_extra__ == constructed.__pydantic_extra__
    assert made.__pydantic_private__ == constructed.__pydantic_private__


def test_a_segment_is_what_model_construct_makes() -> None:
    made = Trusted(Segment)(**SEGMENT)
    _same(made, Segment.model_construct(**SEGMENT))
    assert set(SEGMENT) == set(Segment.model_fields)  # every field given
    assert made.is_active_at(NOW)
    with pytest.raises(ValueError, match="frozen"):
        made.version = 4  # type: ignore[misc]


def test_an_assignment_is_what_model_construct_makes() -> None:
    customer: dict[str, Any] = {"id": "c1", "first_name": "Ada", "last_name": None, "email": None}
    entity: dict[str, Any] = {"id": "le1", "name": "Acme"}
    fields: dict[str, Any] = {
        "segment_id": "gold",
        "assignment_type": AssignmentType.MANUAL,
        "mixins": {},
        "metadata_mixins": {},
        "version": 1,
        "created_at": NOW,
        "modified_at": NOW,
    }
    made = Trusted(Assignment)(
        customer=Trusted(CustomerInfo)(**customer),
        legal_entity=Trusted(LegalEntityInfo)(**entity),
        **fields,
    )
    constructed = Assignment.model_construct(
        customer=CustomerInfo.model_construct(**customer),
        legal_entity=LegalEntityInfo.model_construct(**entity),
        **fields,
    )
    _same(made, constructed)
    _same(made.customer, constructed.customer)


def test_a_model_that_needs_more_than_its_fields_is_refused() -> None:
    class WithPrivate(BaseModel):
        value: int
        _seen: int = PrivateAttr(default=0)

    class WithExtra(BaseModel):
        model_config = ConfigDict(extra="allow")
        value: int

    for model in (WithPrivate, WithExtra):
        with pytest.raises(TypeError, match="model_construct does more"):
            Trusted(model)
