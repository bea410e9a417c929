"""CustomerAssignmentService: translates protobuf to use-case calls and back."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, common_pb2
from google.protobuf import empty_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import aio

from customer_segments.domain.assignment import (
    AssignmentKey,
    AssignmentWrite,
    BulkRemoveInput,
    BulkUpsertInput,
)
from customer_segments.domain.errors import InvalidArgument
from customer_segments.domain.listing import Page
from customer_segments.grpc.auth_interceptor import caller
from customer_segments.grpc.convert import assignment_to_proto, bulk_results_to_proto
from customer_segments.grpc.page_budget import within_budget
from customer_segments.services import assignments, bulk_assignments
from customer_segments.store.store import Store

Context = aio.ServicerContext[Any, Any]


def _key(request: Any) -> AssignmentKey:
    return AssignmentKey.parse(
        request.tenant, request.segment_id, request.customer_id, request.legal_entity_id
    )


def _read_mask(mask: FieldMask) -> FieldMask | None:
    if not mask.paths:
        return None
    if not mask.IsValidForDescriptor(assignment_pb2.Assignment.DESCRIPTOR):
        raise InvalidArgument(
            "fields", f"unknown field path in '{','.join(mask.paths)}' (paths of Assignment)"
        )
    return mask


def _upsert_inputs(request: assignment_pb2.BulkUpsertAssignmentsRequest) -> list[BulkUpsertInput]:
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


def _remove_inputs(request: assignment_pb2.BulkRemoveAssignmentsRequest) -> list[BulkRemoveInput]:
    return [BulkRemoveInput(item.customer_id, item.legal_entity_id) for item in request.items]


async def _single(batch: Sequence[Any]) -> AsyncIterator[Sequence[Any]]:
    yield batch


class _StreamHeader:
    """The tenant and segment of a client stream: set by its first message, repeated or left
    empty by later ones."""

    def __init__(self, first: Any) -> None:
        self.tenant = first.tenant
        self.segment_id = first.segment_id

    def check(self, message: Any) -> None:
        for field in ("tenant", "segment_id"):
            value = getattr(message, field)
            if value and value != getattr(self, field):
                raise InvalidArgument(field, "must be the same in every message of a stream")


class CustomerAssignmentServicer(assignment_pb2_grpc.CustomerAssignmentServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def GetAssignment(
        self, request: assignment_pb2.GetAssignmentRequest, context: Context
    ) -> assignment_pb2.Assignment:
        return assignment_to_proto(await assignments.get_assignment(self.store, _key(request)))

    async def UpsertAssignment(
        self, request: assignment_pb2.UpsertAssignmentRequest, context: Context
    ) -> assignment_pb2.UpsertAssignmentResponse:
        write = AssignmentWrite.parse(
            _key(request),
            request.mixins_json,
            request.metadata_mixins_json,
            request.version if request.HasField("version") else None,
        )
        outcome = await assignments.upsert_assignment(self.store, write)
        return assignment_pb2.UpsertAssignmentResponse(
            created=outcome.created, assignment=assignment_to_proto(outcome.assignment)
        )

    async def RemoveAssignment(
        self, request: assignment_pb2.RemoveAssignmentRequest, context: Context
    ) -> empty_pb2.Empty:
        await assignments.remove_assignment(self.store, _key(request))
        return empty_pb2.Empty()

    async def ListAssignments(
        self, request: assignment_pb2.ListAssignmentsRequest, context: Context
    ) -> assignment_pb2.ListAssignmentsResponse:
        return await self._list(request)

    async def SearchAssignments(
        self, request: assignment_pb2.ListAssignmentsRequest, context: Context
    ) -> assignment_pb2.ListAssignmentsResponse:
        return await self._list(request)

    async def _list(
        self, request: assignment_pb2.ListAssignmentsRequest
    ) -> assignment_pb2.ListAssignmentsResponse:
        mask = _read_mask(request.fields)
        page = await assignments.list_assignments(
            self.store,
            caller(),
            request.tenant,
            request.segment_id,
            q=request.q,
            sort=request.sort,
            page=Page.parse(request.page_number, request.page_size),
            page_token=request.page_token,
            include_total_count=request.include_total_count,
        )
        response = assignment_pb2.ListAssignmentsResponse(
            total_count=page.total_count or 0,
            next_page_token=page.cursors.next,
            previous_page_token=page.cursors.previous,
        )
        for assignment in page.items:
            full = assignment_to_proto(assignment)
            if mask is None:
                response.assignments.append(full)
            else:
                mask.MergeMessage(full, response.assignments.add())
        return within_budget(response, "assignments", page)

    async def BulkUpsertAssignments(
        self, request: assignment_pb2.BulkUpsertAssignmentsRequest, context: Context
    ) -> AsyncIterator[common_pb2.BulkItemResults]:
        results = bulk_assignments.bulk_upsert_assignments(
            self.store, request.tenant, request.segment_id, _single(_upsert_inputs(request))
        )
        async for batch in results:
            yield bulk_results_to_proto(batch)

    async def BulkRemoveAssignments(
        self, request: assignment_pb2.BulkRemoveAssignmentsRequest, context: Context
    ) -> AsyncIterator[common_pb2.BulkItemResults]:
        results = bulk_assignments.bulk_remove_assignments(
            self.store, request.tenant, request.segment_id, _single(_remove_inputs(request))
        )
        async for batch in results:
            yield bulk_results_to_proto(batch)

    async def StreamUpsertAssignments(
        self,
        request_iterator: AsyncIterable[assignment_pb2.BulkUpsertAssignmentsRequest],
        context: Context,
    ) -> AsyncIterator[common_pb2.BulkItemResults]:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            return
        header = _StreamHeader(first)

        async def batches() -> AsyncIterator[list[BulkUpsertInput]]:
            yield _upsert_inputs(first)
            async for message in messages:
                header.check(message)
                yield _upsert_inputs(message)

        results = bulk_assignments.bulk_upsert_assignments(
            self.store, header.tenant, header.segment_id, batches()
        )
        async for batch in results:
            yield bulk_results_to_proto(batch)

    async def StreamRemoveAssignments(
        self,
        request_iterator: AsyncIterable[assignment_pb2.BulkRemoveAssignmentsRequest],
        context: Context,
    ) -> AsyncIterator[common_pb2.BulkItemResults]:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            return
        header = _StreamHeader(first)

        async def batches() -> AsyncIterator[list[BulkRemoveInput]]:
            yield _remove_inputs(first)
            async for message in messages:
                header.check(message)
                yield _remove_inputs(message)

        results = bulk_assignments.bulk_remove_assignments(
            self.store, header.tenant, header.segment_id, batches()
        )
        async for batch in results:
            yield bulk_results_to_proto(batch)
