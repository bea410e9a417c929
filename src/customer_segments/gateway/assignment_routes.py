"""The ten documented Customers Assignments paths."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import grpc
from aiohttp import web
from customersegment.v1 import assignment_pb2, common_pb2

from customer_segments.gateway import render
from customer_segments.gateway.conditions import (
    CONDITIONAL,
    Expectation,
    etag,
    expectation,
    if_match,
    not_modified,
)
from customer_segments.gateway.grpc_client import GrpcClient, Request, RpcFailed
from customer_segments.gateway.models import (
    CustomerAssignmentRemoveBulk,
    CustomerAssignmentUpsert,
    CustomerAssignmentUpsertBulk,
    Search,
)
from customer_segments.gateway.requests import (
    fields_of,
    json_body,
    listing,
    mixins_json,
    paging_fields,
    parse_items,
    parsed,
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

    async def _get(self, request: web.Request) -> assignment_pb2.Assignment:
        return await self.client.call(
            request,
            self.client.assignments.GetAssignment,
            assignment_pb2.GetAssignmentRequest(**_key(request)),
        )

    async def _current_version(self, request: web.Request) -> int | None:
        try:
            return (await self._get(request)).metadata.version
        except RpcFailed as failure:
            if failure.error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def get_assignment(self, request: web.Request) -> web.StreamResponse:
        answer = await self._get(request)
        version = answer.metadata.version
        unchanged = not_modified(request, version)
        if unchanged is not None:
            return unchanged
        body = render.assignment(answer)
        paths = fields_of(request)
        return web.json_response(
            render.select(body, paths) if paths else body, headers={"ETag": etag(version)}
        )

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
        method = self.client.assignments.ListAssignments
        return await self._list(request, method, request.query.get("q", ""))

    async def search_assignments(self, request: web.Request) -> web.StreamResponse:
        search: Search = parsed(Search, await json_body(request))
        return await self._list(request, self.client.assignments.SearchAssignments, search.q or "")

    async def _list(
        self,
        request: web.Request,
        method: grpc.aio.UnaryUnaryMultiCallable[
            assignment_pb2.ListAssignmentsRequest, assignment_pb2.ListAssignmentsResponse
        ],
        q: str,
    ) -> web.StreamResponse:
        answer = await self.client.call(
            request,
            method,
            assignment_pb2.ListAssignmentsRequest(
                tenant=request.match_info["tenant"],
                segment_id=request.match_info["segmentId"],
                q=q,
                **paging_fields(request),
            ),
        )
        bodies = [render.assignment(item) for item in answer.assignments]
        return listing(request, bodies, answer)

    async def bulk_upsert(self, request: web.Request) -> web.StreamResponse:
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
        return await self._bulk(request, method, message, [index for index, _ in valid], results)

    async def bulk_remove(self, request: web.Request) -> web.StreamResponse:
        valid, results = parse_items(await json_body(request), CustomerAssignmentRemoveBulk)
        message = assignment_pb2.BulkRemoveAssignmentsRequest(
            tenant=request.match_info["tenant"], segment_id=request.match_info["segmentId"]
        )
        for _, item in valid:
            message.items.add(
                customer_id=item.customer_id or "", legal_entity_id=item.legal_entity_id or ""
            )
        method = self.client.assignments.BulkRemoveAssignments
        return await self._bulk(request, method, message, [index for index, _ in valid], results)

    async def _bulk(
        self,
        request: web.Request,
        method: grpc.aio.UnaryStreamMultiCallable[Request, common_pb2.BulkItemResults],
        message: Request,
        forwarded: list[int],
        results: dict[int, dict[str, Any]],
    ) -> web.StreamResponse:
        """207 with one entry per request item, in request order, 1-based `index`."""
        if forwarded:
            async for batch in self.client.stream(request, method, message):
                for result in batch.results:
                    index = forwarded[result.index - 1]
                    results[index] = render.bulk_result(result, index)
        return web.json_response([results[index] for index in sorted(results)], status=207)
