"""The ten documented Customers Assignments paths."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from aiohttp import web
from customersegment.v1 import assignment_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from customer_segments.gateway import render
from customer_segments.gateway.conditions import (
    CONDITIONAL,
    Expectation,
    expectation,
    if_match,
    refuse_if_match,
    single,
    version_if_found,
)
from customer_segments.gateway.field_names import ASSIGNMENT_FIELDS
from customer_segments.gateway.grpc_client import GrpcClient
from customer_segments.gateway.models import (
    CustomerAssignmentRemoveBulk,
    CustomerAssignmentUpsert,
    CustomerAssignmentUpsertBulk,
    Search,
)
from customer_segments.gateway.requests import (
    json_body,
    listing,
    mixins_json,
    multi_status,
    paging_fields,
    parse_items,
    parsed,
    read_mask,
)

BASE = "/customer-segment/{tenant}/segments/{segmentId}/customers"
# A customer id is any path segment but the literal ones of the sibling paths.
CUSTOMER = "{customerId:(?!(?:search|bulk)$)[^/]+}"


class _WriteFields(TypedDict):
    mixins_json: str
    metadata_mixins_json: str
    version: NotRequired[int]


def _write_fields(upsert: CustomerAssignmentUpsert) -> _WriteFields:
    """The proto fields of what an upsert writes (mixins, metadata.mixins, metadata.version)."""
    metadata = upsert.metadata
    fields: _WriteFields = {
        "mixins_json": mixins_json(upsert.mixins),
        "metadata_mixins_json": mixins_json(metadata.mixins if metadata else None),
    }
    if metadata is not None and metadata.version is not None:
        fields["version"] = metadata.version
    return fields


class _KeyFields(TypedDict):
    tenant: str
    segment_id: str
    customer_id: str
    legal_entity_id: str


def _key(request: web.Request) -> _KeyFields:
    info = request.match_info
    return {
        "tenant": info["tenant"],
        "segment_id": info["segmentId"],
        "customer_id": info["customerId"],
        "legal_entity_id": info.get("legalEntityId", ""),
    }


def _listing_fields(request: web.Request, q: str) -> dict[str, Any]:
    """The fields that ListAssignmentsRequest and SearchAssignmentsRequest share."""
    return {
        "tenant": request.match_info["tenant"],
        "segment_id": request.match_info["segmentId"],
        "q": q,
        "fields": read_mask(request, ASSIGNMENT_FIELDS),
        **paging_fields(request),
    }


def _page(
    request: web.Request,
    answer: assignment_pb2.ListAssignmentsResponse | assignment_pb2.SearchAssignmentsResponse,
) -> web.StreamResponse:
    return listing(request, [render.assignment(item) for item in answer.assignments], answer)


class AssignmentRoutes:
    def __init__(self, client: GrpcClient) -> None:
        self.client = client

    def register(self, app: web.Application) -> None:
        router = app.router
        # Literal paths first; the customer id pattern also refuses "search" and "bulk".
        router.add_post(BASE + "/search", self.search_assignments)
        router.add_put(BASE + "/bulk", self.bulk_upsert)
        router.add_delete(BASE + "/bulk", self.bulk_remove)
        router.add_get(BASE, self.list_assignments)
        for path in (f"{BASE}/{CUSTOMER}", f"{BASE}/{CUSTOMER}/{{legalEntityId}}"):
            router.add_get(path, self.get_assignment)
            router.add_put(path, self.upsert_assignment)
            router.add_delete(path, self.remove_assignment)

    async def _get(
        self, request: web.Request, mask: FieldMask | None = None
    ) -> assignment_pb2.Assignment:
        answer: assignment_pb2.GetAssignmentResponse = await self.client.call(
            request,
            self.client.assignments.GetAssignment,
            assignment_pb2.GetAssignmentRequest(**_key(request), read_mask=mask),
        )
        return answer.assignment

    async def _current_version(self, request: web.Request) -> int | None:
        async def read() -> int:
            return (await self._get(request)).metadata.version

        return await version_if_found(read)

    async def get_assignment(self, request: web.Request) -> web.StreamResponse:
        answer = await self._get(request, read_mask(request, ASSIGNMENT_FIELDS))
        return single(request, render.assignment(answer), answer.metadata.version)

    async def _expectation(self, request: web.Request, body_version: int | None) -> Expectation:
        condition = if_match(request)
        if condition is not None:
            request[CONDITIONAL] = True
        return await expectation(
            condition,
            body_version,
            request.match_info["customerId"],
            lambda: self._current_version(request),
        )

    async def upsert_assignment(self, request: web.Request) -> web.StreamResponse:
        upsert: CustomerAssignmentUpsert = parsed(
            CustomerAssignmentUpsert, await json_body(request)
        )
        message = assignment_pb2.UpsertAssignmentRequest(
            **_key(request),
            mixins_json=mixins_json(upsert.mixins),
            metadata_mixins_json=mixins_json(upsert.metadata.mixins if upsert.metadata else None),
        )
        expected = await self._expectation(
            request, upsert.metadata.version if upsert.metadata else None
        )
        if expected.version is not None:
            message.version = expected.version
        message.must_exist = expected.must_exist
        answer = await self.client.call(request, self.client.assignments.UpsertAssignment, message)
        if answer.created:
            return web.Response(status=201, headers={"Location": request.rel_url.raw_path})
        return web.Response(status=204)

    async def remove_assignment(self, request: web.Request) -> web.StreamResponse:
        message = assignment_pb2.RemoveAssignmentRequest(**_key(request))
        expected = await self._expectation(request, None)
        if expected.version is not None:
            message.version = expected.version
        message.must_exist = expected.must_exist
        await self.client.call(request, self.client.assignments.RemoveAssignment, message)
        return web.Response(status=204)

    async def list_assignments(self, request: web.Request) -> web.StreamResponse:
        message = assignment_pb2.ListAssignmentsRequest(
            **_listing_fields(request, request.query.get("q", ""))
        )
        answer = await self.client.call(request, self.client.assignments.ListAssignments, message)
        return _page(request, answer)

    async def search_assignments(self, request: web.Request) -> web.StreamResponse:
        search: Search = parsed(Search, await json_body(request))
        message = assignment_pb2.SearchAssignmentsRequest(
            **_listing_fields(request, search.q or "")
        )
        answer = await self.client.call(request, self.client.assignments.SearchAssignments, message)
        return _page(request, answer)

    async def bulk_upsert(self, request: web.Request) -> web.StreamResponse:
        refuse_if_match(request)
        valid, results = parse_items(await json_body(request), CustomerAssignmentUpsertBulk)
        message = assignment_pb2.BulkUpsertAssignmentsRequest(
            tenant=request.match_info["tenant"], segment_id=request.match_info["segmentId"]
        )
        for _, item in valid:
            message.items.add(
                customer_id=item.customer_id or "",
                legal_entity_id=item.legal_entity_id or "",
                **_write_fields(item),
            )
        method = self.client.assignments.BulkUpsertAssignments
        forwarded = [index for index, _ in valid]
        return await multi_status(
            self.client, request, method, message, forwarded, results, render.bulk_result
        )

    async def bulk_remove(self, request: web.Request) -> web.StreamResponse:
        refuse_if_match(request)
        valid, results = parse_items(await json_body(request), CustomerAssignmentRemoveBulk)
        message = assignment_pb2.BulkRemoveAssignmentsRequest(
            tenant=request.match_info["tenant"], segment_id=request.match_info["segmentId"]
        )
        for _, item in valid:
            message.items.add(
                customer_id=item.customer_id or "", legal_entity_id=item.legal_entity_id or ""
            )
        method = self.client.assignments.BulkRemoveAssignments
        forwarded = [index for index, _ in valid]
        return await multi_status(
            self.client, request, method, message, forwarded, results, render.bulk_result
        )
