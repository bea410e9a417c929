"""Read masks (AIP-157): the one implementation of field selection, for gRPC callers and for
the REST `fields` parameter, which the gateway passes on as a FieldMask."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.descriptor import Descriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from customer_segments.domain.errors import InvalidArgument

Projected = TypeVar("Projected", bound=Message)


def read_mask(mask: FieldMask, descriptor: Descriptor, field: str) -> FieldMask | None:
    """The mask of a request (its field `field`), checked against the message it selects
    from; None when it selects everything (no paths)."""
    if not mask.paths:
        return None
    if not mask.IsValidForDescriptor(descriptor):
        paths = ",".join(mask.paths)
        raise InvalidArgument(
            field, f"unknown field path in '{paths}' (paths of {descriptor.name})"
        )
    return mask


def projected(message: Projected, mask: FieldMask | None) -> Projected:
    """Only the fields of the mask (the whole message without one)."""
    if mask is None:
        return message
    selected = type(message)()
    mask.MergeMessage(message, selected)
    return selected
