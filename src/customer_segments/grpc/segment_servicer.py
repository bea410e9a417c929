"""SegmentService: translates protobuf to use-case calls and back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from customersegment.v1 import segment_pb2, segment_pb2_grpc
from grpc import aio

from customer_segments.domain.listing import Page
from customer_segments.domain.segment import BulkSegmentUpsert, SegmentInput
from customer_segments.domain.segment_document import PatchInput
from customer_segments.grpc.auth_interceptor import caller
from customer_segments.grpc.convert import (
    SEGMENT_STATUS_FROM_PROTO,
    SegmentMessages,
    bulk_segment_result_to_proto,
    moment,
    segment_to_proto,
)
from customer_segments.grpc.page_budget import within_budget
from customer_segments.grpc.projection import projected, read_mask
from customer_segments.services import bulk_segments, segments
from customer_segments.store.store import Store

Context = aio.ServicerContext[Any, Any]


def _input(segment: segment_pb2.Segment) -> SegmentInput:
    validity = segment.validity
    return SegmentInput(
        name=dict(segment.name),
        description=dict(segment.description),
        validity_from=moment(validity.start_time, "segment.validity.start_time")
        if validity.HasField("start_time")
        else None,
        validity_to=moment(validity.end_time, "segment.validity.end_time")
        if validity.HasField("end_time")
        else None,
        status=SEGMENT_STATUS_FROM_PROTO.get(segment.status),
        site_code=segment.site_code,
        mixins_json=segment.mixins_json,
        metadata_mixins_json=segment.metadata.mixins_json,
    )


def _upsert_item(item: segment_pb2.BulkUpsertSegmentsItem) -> BulkSegmentUpsert:
    version = item.version if item.HasField("version") else None
    return BulkSegmentUpsert(item.segment.id, _input(item.segment), version)


class SegmentServicer(segment_pb2_grpc.SegmentServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store
        self._messages = SegmentMessages()  # of the reads (GetSegment, ListSegments)

    async def CreateSegment(
        self, request: segment_pb2.CreateSegmentRequest, context: Context
    ) -> segment_pb2.CreateSegmentResponse:
        segment = await segments.create_segment(
            self.store, caller(), request.tenant, request.segment.id, _input(request.segment)
        )
        return segment_pb2.CreateSegmentResponse(segment=segment_to_proto(segment))

    async def UpsertSegment(
        self, request: segment_pb2.UpsertSegmentRequest, context: Context
    ) -> segment_pb2.UpsertSegmentResponse:
        outcome = await segments.upsert_segment(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            _input(request.segment),
            request.version if request.HasField("version") else None,
            must_exist=request.must_exist,
        )
        return segment_pb2.UpsertSegmentResponse(
            created=outcome.created, segment=segment_to_proto(outcome.segment)
        )

    async def PatchSegment(
        self, request: segment_pb2.PatchSegmentRequest, context: Context
    ) -> segment_pb2.PatchSegmentResponse:
        operations = [
            PatchInput(operation.op, operation.path, operation.value_json)
            for operation in request.operations
        ]
        segment = await segments.patch_segment(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            operations,
            expected_version=request.version if request.HasField("version") else None,
        )
        return segment_pb2.PatchSegmentResponse(segment=segment_to_proto(segment))

    async def GetSegment(
        self, request: segment_pb2.GetSegmentRequest, context: Context
    ) -> segment_pb2.GetSegmentResponse:
        mask = read_mask(request.read_mask, segment_pb2.Segment.DESCRIPTOR, "read_mask")
        segment = await segments.get_segment(
            self.store, caller(), request.tenant, request.segment_id
        )
        message = self._messages.of(request.tenant, segment)
        return segment_pb2.GetSegmentResponse(segment=projected(message, mask))

    async def ListSegments(
        self, request: segment_pb2.ListSegmentsRequest, context: Context
    ) -> segment_pb2.ListSegmentsResponse:
        mask = read_mask(request.read_mask, segment_pb2.Segment.DESCRIPTOR, "read_mask")
        page = await segments.list_segments(
            self.store,
            caller(),
            request.tenant,
            q=request.q,
            customer_id=request.customer_id,
            legal_entity_id=request.legal_entity_id,
            sort=request.sort,
            page=Page(request.page_number, request.page_size),
            page_token=request.page_token,
            include_total_count=request.include_total_count,
        )
        response = segment_pb2.ListSegmentsResponse(
            segments=[
                projected(self._messages.of(request.tenant, segment), mask)
                for segment in page.items
            ],
            total_count=page.total_count or 0,
            next_page_token=page.cursors.next,
            previous_page_token=page.cursors.previous,
        )
        return within_budget(response, "segments", page)

    async def DeleteSegment(
        self, request: segment_pb2.DeleteSegmentRequest, context: Context
    ) -> segment_pb2.DeleteSegmentResponse:
        await segments.delete_segment(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            force=request.force,
            expected_version=request.version if request.HasField("version") else None,
        )
        return segment_pb2.DeleteSegmentResponse()

    async def BulkCreateSegments(
        self, request: segment_pb2.BulkCreateSegmentsRequest, context: Context
    ) -> AsyncIterator[segment_pb2.BulkCreateSegmentsResponse]:
        # Each read when it is decided: a timestamp out of range is that item's 400.
        items = ((lambda s=segment: (s.id, _input(s))) for segment in request.segments)
        results = bulk_segments.bulk_create_segments(self.store, caller(), request.tenant, items)
        async for result in results:
            yield segment_pb2.BulkCreateSegmentsResponse(
                results=[bulk_segment_result_to_proto(result)]
            )

    async def BulkUpsertSegments(
        self, request: segment_pb2.BulkUpsertSegmentsRequest, context: Context
    ) -> AsyncIterator[segment_pb2.BulkUpsertSegmentsResponse]:
        items = ((lambda i=item: _upsert_item(i)) for item in request.items)
        results = bulk_segments.bulk_upsert_segments(self.store, caller(), request.tenant, items)
        async for result in results:
            yield segment_pb2.BulkUpsertSegmentsResponse(
                results=[bulk_segment_result_to_proto(result)]
            )

    async def BulkDeleteSegments(
        self, request: segment_pb2.BulkDeleteSegmentsRequest, context: Context
    ) -> AsyncIterator[segment_pb2.BulkDeleteSegmentsResponse]:
        results = bulk_segments.bulk_delete_segments(
            self.store, caller(), request.tenant, request.segment_ids, force=request.force
        )
        async for result in results:
            yield segment_pb2.BulkDeleteSegmentsResponse(
                results=[bulk_segment_result_to_proto(result)]
            )
