"""The documented Segments paths (create, list, search, get, upsert, patch, delete, bulk)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web
from customersegment.v1 import segment_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from customer_segments.domain.segment_document import SegmentDocument
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
from customer_segments.gateway.field_names import SEGMENT_FIELDS
from customer_segments.gateway.grpc_client import GrpcClient
from customer_segments.gateway.models import PatchOperation, Search, SegmentCreation
from customer_segments.gateway.requests import (
    BadRequest,
    bad_item,
    bulk_items,
    json_body,
    listing,
    mixins_json,
    multi_status,
    paging_fields,
    parse_items,
    parsed,
    read_mask,
)

BASE = "/customer-segment/{tenant}/segments"
SEGMENT = "{segmentId:(?!(?:search|bulk)$)[^/]+}"


def _segment(upsert: SegmentDocument, segment_id: str = "") -> segment_pb2.Segment:
    message = segment_pb2.Segment(
        id=segment_id,
        name=upsert.name,
        description=upsert.description or {},
        status=(
            segment_pb2.SegmentStatus.Value(render.SEGMENT_STATUS_PREFIX + upsert.status)
            if upsert.status
            else segment_pb2.SEGMENT_STATUS_UNSPECIFIED
        ),
        site_code=upsert.site_code,
        mixins_json=mixins_json(upsert.mixins),
    )
    if upsert.metadata is not None:
        message.metadata.mixins_json = mixins_json(upsert.metadata.mixins)
    if upsert.validity is not None:
        if upsert.validity.from_ is not None:
            message.validity.start_time.FromDatetime(upsert.validity.from_)
        if upsert.validity.to is not None:
            message.validity.end_time.FromDatetime(upsert.validity.to)
    return message


def _upsert_request(
    tenant: str, segment_id: str, upsert: SegmentDocument
) -> segment_pb2.UpsertSegmentRequest:
    request = segment_pb2.UpsertSegmentRequest(
        tenant=tenant, segment_id=segment_id, segment=_segment(upsert, segment_id)
    )
    if upsert.metadata is not None and upsert.metadata.version is not None:
        request.version = upsert.metadata.version
    return request


def _force(request: web.Request) -> bool:
    value = request.query.get("forceDelete", "false").lower()
    if value not in ("true", "false"):
        raise BadRequest("forceDelete", "must be true or false")
    return value == "true"


class SegmentRoutes:
    def __init__(self, client: GrpcClient) -> None:
        self.client = client

    def register(self, app: web.Application) -> None:
        router = app.router
        router.add_post(BASE + "/search", self.search_segments)
        router.add_post(BASE + "/bulk", self.bulk_create)
        router.add_put(BASE + "/bulk", self.bulk_upsert)
        router.add_delete(BASE + "/bulk", self.bulk_delete)
        router.add_post(BASE, self.create_segment)
        router.add_get(BASE, self.list_segments)
        path = f"{BASE}/{SEGMENT}"
        router.add_get(path, self.get_segment)
        router.add_put(path, self.upsert_segment)
        router.add_patch(path, self.patch_segment)
        router.add_delete(path, self.delete_segment)

    async def create_segment(self, request: web.Request) -> web.StreamResponse:
        creation = parsed(SegmentCreation, await json_body(request))
        created = await self._create(request, creation)
        location = request.rel_url.raw_path.rstrip("/") + "/" + quote(created.id, safe="")
        return web.json_response({"id": created.id}, status=201, headers={"Location": location})

    async def _create(self, request: web.Request, creation: SegmentCreation) -> segment_pb2.Segment:
        answer: segment_pb2.CreateSegmentResponse = await self.client.call(
            request,
            self.client.segments.CreateSegment,
            segment_pb2.CreateSegmentRequest(
                tenant=request.match_info["tenant"], segment=_segment(creation, creation.id or "")
            ),
        )
        return answer.segment

    async def _get(
        self, request: web.Request, mask: FieldMask | None = None
    ) -> segment_pb2.Segment:
        answer: segment_pb2.GetSegmentResponse = await self.client.call(
            request,
            self.client.segments.GetSegment,
            segment_pb2.GetSegmentRequest(
                tenant=request.match_info["tenant"],
                segment_id=request.match_info["segmentId"],
                read_mask=mask,
            ),
        )
        return answer.segment

    async def _current_version(self, request: web.Request) -> int | None:
        async def read() -> int:
            return (await self._get(request)).metadata.version

        return await version_if_found(read)

    async def _expectation(self, request: web.Request, body_version: int | None) -> Expectation:
        condition = if_match(request)
        if condition is not None:
            request[CONDITIONAL] = True
        return await expectation(
            condition,
            body_version,
            request.match_info["segmentId"],
            lambda: self._current_version(request),
        )

    async def get_segment(self, request: web.Request) -> web.StreamResponse:
        segment = await self._get(request, read_mask(request, SEGMENT_FIELDS))
        return single(request, render.segment(segment), segment.metadata.version)

    async def upsert_segment(self, request: web.Request) -> web.StreamResponse:
        upsert = parsed(SegmentDocument, await json_body(request))
        message = _upsert_request(
            request.match_info["tenant"], request.match_info["segmentId"], upsert
        )
        expected = await self._expectation(
            request, message.version if message.HasField("version") else None
        )
        if expected.version is not None:
            message.version = expected.version
        message.must_exist = expected.must_exist
        answer = await self.client.call(request, self.client.segments.UpsertSegment, message)
        if answer.created:
            # {"id"} as documented.
            return web.json_response(
                {"id": answer.segment.id},
                status=201,
                headers={"Location": request.rel_url.raw_path},
            )
        return web.Response(status=204)

    async def patch_segment(self, request: web.Request) -> web.StreamResponse:
        """JSON Patch (add, remove, replace), applied and written by the service."""
        body = await json_body(request)
        if not isinstance(body, list):
            raise BadRequest("body", "must be a JSON array of patch operations")
        operations = [parsed(PatchOperation, raw, f"[{n}].") for n, raw in enumerate(body, 1)]
        message = segment_pb2.PatchSegmentRequest(
            tenant=request.match_info["tenant"],
            segment_id=request.match_info["segmentId"],
            operations=[
                segment_pb2.JsonPatchOperation(
                    op=operation.op, path=operation.path, value_json=json.dumps(operation.value)
                )
                for operation in operations
            ],
        )
        expected = await self._expectation(request, None)
        if expected.version is not None:
            message.version = expected.version
        await self.client.call(request, self.client.segments.PatchSegment, message)
        return web.Response(status=204)

    async def delete_segment(self, request: web.Request) -> web.StreamResponse:
        message = segment_pb2.DeleteSegmentRequest(
            tenant=request.match_info["tenant"],
            segment_id=request.match_info["segmentId"],
            force=_force(request),
        )
        expected = await self._expectation(request, None)
        if expected.version is not None:
            message.version = expected.version
        await self.client.call(request, self.client.segments.DeleteSegment, message)
        return web.Response(status=204)

    async def list_segments(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, request.query.get("q", ""))

    async def search_segments(self, request: web.Request) -> web.StreamResponse:
        search = parsed(Search, await json_body(request))
        return await self._list(request, search.q or "")

    async def _list(self, request: web.Request, q: str) -> web.StreamResponse:
        answer = await self.client.call(
            request,
            self.client.segments.ListSegments,
            segment_pb2.ListSegmentsRequest(
                tenant=request.match_info["tenant"],
                q=q,
                customer_id=request.query.get("customerId", ""),
                legal_entity_id=request.query.get("legalEntityId", ""),
                read_mask=read_mask(request, SEGMENT_FIELDS),
                **paging_fields(request),
            ),
        )
        bodies = [render.segment(segment) for segment in answer.segments]
        return listing(request, bodies, answer)

    # Bulk: the service decides each item on its own (SegmentService Bulk* RPCs).

    async def bulk_create(self, request: web.Request) -> web.StreamResponse:
        refuse_if_match(request)
        valid, results = parse_items(await json_body(request), SegmentCreation)
        message = segment_pb2.BulkCreateSegmentsRequest(
            tenant=request.match_info["tenant"],
            segments=[_segment(creation, creation.id or "") for _, creation in valid],
        )
        method = self.client.segments.BulkCreateSegments
        forwarded = [index for index, _ in valid]
        return await multi_status(
            self.client, request, method, message, forwarded, results, render.segment_bulk_result
        )

    async def bulk_upsert(self, request: web.Request) -> web.StreamResponse:
        refuse_if_match(request)
        valid, results = parse_items(await json_body(request), SegmentCreation)
        message = segment_pb2.BulkUpsertSegmentsRequest(tenant=request.match_info["tenant"])
        for _, upsert in valid:
            item = message.items.add(segment=_segment(upsert, upsert.id or ""))
            if upsert.metadata is not None and upsert.metadata.version is not None:
                item.version = upsert.metadata.version
        method = self.client.segments.BulkUpsertSegments
        forwarded = [index for index, _ in valid]
        return await multi_status(
            self.client, request, method, message, forwarded, results, render.segment_bulk_result
        )

    async def bulk_delete(self, request: web.Request) -> web.StreamResponse:
        refuse_if_match(request)
        ids = bulk_items(await json_body(request))
        message = segment_pb2.BulkDeleteSegmentsRequest(
            tenant=request.match_info["tenant"], force=_force(request)
        )
        results: dict[int, dict[str, Any]] = {}
        forwarded: list[int] = []
        for index, segment_id in enumerate(ids, start=1):
            if isinstance(segment_id, str):
                message.segment_ids.append(segment_id)
                forwarded.append(index)
            else:
                results[index] = bad_item(index, BadRequest("id", "must be a string"))
        method = self.client.segments.BulkDeleteSegments
        return await multi_status(
            self.client, request, method, message, forwarded, results, render.segment_bulk_result
        )
