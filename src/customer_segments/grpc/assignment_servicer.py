"""CustomerAssignmentService: translates protobuf to use-case calls and back."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, TypeVar

from customersegment.v1 import assignment_pb2, assignment_pb2_grpc
from grpc import aio

from customer_segments.domain.assignment import (
    Batch,
    BulkRemoveInput,
    BulkUpsertInput,
)
from customer_segments.domain.listing import Page
from customer_segments.grpc.auth_interceptor import caller
from customer_segments.grpc.convert import add_bulk_results, assignment_to_proto
from customer_segments.grpc.page_budget import within_budget
from customer_segments.grpc.projection import projected, read_mask
from customer_segments.services import assignments, bulk_assignments
from customer_segments.store.store import Store

Context = aio.ServicerContext[Any, Any]


# Bulk and Stream RPCs have messages of their own with the same fields.
_UpsertMessage = (
    assignment_pb2.BulkUpsertAssignmentsRequest | assignment_pb2.StreamUpsertAssignmentsRequest
)
_RemoveMessage = (
    assignment_pb2.BulkRemoveAssignmentsRequest | assignment_pb2.StreamRemoveAssignmentsRequest
)
_ListMessage = assignment_pb2.ListAssignmentsRequest | assignment_pb2.SearchAssignmentsRequest
_ListAnswer = TypeVar(
    "_ListAnswer", assignment_pb2.ListAssignmentsResponse, assignment_pb2.SearchAssignmentsResponse
)


def _upsert_inputs(request: _UpsertMessage) -> list[BulkUpsertInput]:
    return [
        BulkUpsertInput(
            item.customer_id,
            item.legal_entity_id,
            item.mixins_json,
            item.metadata_mixins_json,
            item.version if item.HasField("version") else None,
        )
        for item in request.items
    ]


def _remove_inputs(request: _RemoveMessage) -> list[BulkRemoveInput]:
    return [BulkRemoveInput(item.customer_id, item.legal_entity_id) for item in request.items]


async def _single(batch: Batch[Any]) -> AsyncIterator[Batch[Any]]:
    yield batch


class CustomerAssignmentServicer(assignment_pb2_grpc.CustomerAssignmentServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def GetAssignment(
        self, request: assignment_pb2.GetAssignmentRequest, context: Context
    ) -> assignment_pb2.GetAssignmentResponse:
        mask = read_mask(request.read_mask, assignment_pb2.Assignment.DESCRIPTOR, "read_mask")
        assignment = await assignments.get_assignment(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            request.customer_id,
            request.legal_entity_id,
        )
        return assignment_pb2.GetAssignmentResponse(
            assignment=projected(assignment_to_proto(assignment), mask)
        )

    async def UpsertAssignment(
        self, request: assignment_pb2.UpsertAssignmentRequest, context: Context
    ) -> assignment_pb2.UpsertAssignmentResponse:
        outcome = await assignments.upsert_assignment(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            request.customer_id,
            request.legal_entity_id,
            mixins_json=request.mixins_json,
            metadata_mixins_json=request.metadata_mixins_json,
            version=request.version if request.HasField("version") else None,
            must_exist=request.must_exist,
        )
        return assignment_pb2.UpsertAssignmentResponse(
            created=outcome.created, assignment=assignment_to_proto(outcome.assignment)
        )

    async def RemoveAssignment(
        self, request: assignment_pb2.RemoveAssignmentRequest, context: Context
    ) -> assignment_pb2.RemoveAssignmentResponse:
        await assignments.remove_assignment(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            request.customer_id,
            request.legal_entity_id,
            version=request.version if request.HasField("version") else None,
            must_exist=request.must_exist,
        )
        return assignment_pb2.RemoveAssignmentResponse()

    async def ListAssignments(
        self, request: assignment_pb2.ListAssignmentsRequest, context: Context
    ) -> assignment_pb2.ListAssignmentsResponse:
        return await self._list(request, assignment_pb2.ListAssignmentsResponse(), search=False)

    async def SearchAssignments(
        self, request: assignment_pb2.SearchAssignmentsRequest, context: Context
    ) -> assignment_pb2.SearchAssignmentsResponse:
        return await self._list(request, assignment_pb2.SearchAssignmentsResponse(), search=True)

    async def _list(
        self, request: _ListMessage, response: _ListAnswer, *, search: bool
    ) -> _ListAnswer:
        mask = read_mask(request.fields, assignment_pb2.Assignment.DESCRIPTOR, "fields")
        # The same answer, for different scopes.
        use_case = assignments.search_assignments if search else assignments.list_assignments
        page = await use_case(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            q=request.q,
            sort=request.sort,
            page=Page(request.page_number, request.page_size),
            page_token=request.page_token,
            include_total_count=request.include_total_count,
        )
        response.total_count = page.total_count or 0
        response.next_page_token = page.cursors.next
        response.previous_page_token = page.cursors.previous
        response.assignments.extend(
            projected(assignment_to_proto(assignment), mask) for assignment in page.items
        )
        return within_budget(response, "assignments", page)

    async def BulkUpsertAssignments(
        self, request: assignment_pb2.BulkUpsertAssignmentsRequest, context: Context
    ) -> AsyncIterator[assignment_pb2.BulkUpsertAssignmentsResponse]:
        batch = Batch(_upsert_inputs(request), request.tenant, request.segment_id)
        results = bulk_assignments.bulk_upsert_assignments(self.store, caller(), _single(batch))
        async for decided in results:
            response = assignment_pb2.BulkUpsertAssignmentsResponse()
            add_bulk_results(response.results, decided)
            yield response

    async def BulkRemoveAssignments(
        self, request: assignment_pb2.BulkRemoveAssignmentsRequest, context: Context
    ) -> AsyncIterator[assignment_pb2.BulkRemoveAssignmentsResponse]:
        batch = Batch(_remove_inputs(request), request.tenant, request.segment_id)
        results = bulk_assignments.bulk_remove_assignments(self.store, caller(), _single(batch))
        async for decided in results:
            response = assignment_pb2.BulkRemoveAssignmentsResponse()
            add_bulk_results(response.results, decided)
            yield response

    async def StreamUpsertAssignments(
        self,
        request_iterator: AsyncIterable[assignment_pb2.StreamUpsertAssignmentsRequest],
        context: Context,
    ) -> AsyncIterator[assignment_pb2.StreamUpsertAssignmentsResponse]:
        batches = (
            Batch(_upsert_inputs(message), message.tenant, message.segment_id)
            async for message in request_iterator
        )
        results = bulk_assignments.bulk_upsert_assignments(self.store, caller(), batches)
        async for decided in results:
            response = assignment_pb2.StreamUpsertAssignmentsResponse()
            add_bulk_results(response.results, decided)
            yield response

    async def StreamRemoveAssignments(
        self,
        request_iterator: AsyncIterable[assignment_pb2.StreamRemoveAssignmentsRequest],
        context: Context,
    ) -> AsyncIterator[assignment_pb2.StreamRemoveAssignmentsResponse]:
        batches = (
            Batch(_remove_inputs(message), message.tenant, message.segment_id)
            async for message in request_iterator
        )
        results = bulk_assignments.bulk_remove_assignments(self.store, caller(), batches)
        async for decided in results:
            response = assignment_pb2.StreamRemoveAssignmentsResponse()
            add_bulk_results(response.results, decided)
            yield response
