"""The documented Segments paths (create, list, search, get, upsert, patch, delete, bulk)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import grpc
from aiohttp import web
from customersegment.v1 import segment_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from customer_segments.domain.segment_document import SegmentDocument
from customer_segments.gateway import render
from customer_segments.gateway.conditions import (
    CONDITIONAL,
    Expectation,
    etag,
    expectation,
    if_match,
    not_modified,
)
from customer_segments.gateway.errors import HTTP_STATUS_OF, refused_by_grpc
from customer_segments.gateway.grpc_client import GrpcClient, RpcFailed
from customer_segments.gateway.models import PatchOperation, Search, SegmentCreation
from customer_segments.gateway.render import rest_message
from customer_segments.gateway.requests import (
    BadRequest,
    bulk_items,
    fields_of,
    json_body,
    listing,
    mixins_json,
    paging_fields,
    parse_items,
    parsed,
)

BASE = "/customer-segment/{tenant}/segments"
SEGMENT = "{segmentId:(?!(?:search|bulk)$)[^/]+}"


def _segment(upsert: SegmentDocument, segment_id: str = "") -> segment_pb2.Segment:
    message = segment_pb2.Segment(
        id=segment_id,
        name=upsert.name,
        description=upsert.description or {},
        status=(
            segment_pb2.SegmentStatus.Value(upsert.status)
            if upsert.status
            else segment_pb2.SEGMENT_STATUS_UNSPECIFIED
        ),
        site_code=upsert.site_code,
        mixins_json=mixins_json(upsert.mixins),
    )
    if upsert.metadata is not None:
        message.metadata.mixins_json = mixins_json(upsert.metadata.mixins)
    if upsert.validity is not None:
        for name, moment in (("from", upsert.validity.from_), ("to", upsert.validity.to)):
            if moment is not None:
                stamp = Timestamp()
                stamp.FromDatetime(moment)
                getattr(message.validity, name).CopyFrom(stamp)
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


# A refused token refuses the whole request, not item by item.
_REQUEST_LEVEL = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


def _failed_item(index: int, failure: RpcFailed, segment_id: str | None) -> dict[str, Any]:
    if failure.error.code() in _REQUEST_LEVEL:
        raise failure
    refused = refused_by_grpc(failure.error, failure.request_bytes)
    if refused is not None:
        code, message = refused
    else:
        code = HTTP_STATUS_OF.get(failure.error.code(), 500)
        message = rest_message(failure.error.details() or "") if code < 500 else "Internal error"
    result: dict[str, Any] = {"index": index, "code": code, "status": _phrase(code)}
    if segment_id:
        result["id"] = segment_id
    result["message"] = message
    return result


def _phrase(code: int) -> str:
    return HTTPStatus(code).phrase


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
        return await self.client.call(
            request,
            self.client.segments.CreateSegment,
            segment_pb2.CreateSegmentRequest(
                tenant=request.match_info["tenant"], segment=_segment(creation, creation.id or "")
            ),
        )

    async def _get(self, request: web.Request) -> segment_pb2.Segment:
        return await self.client.call(
            request,
            self.client.segments.GetSegment,
            segment_pb2.GetSegmentRequest(
                tenant=request.match_info["tenant"], segment_id=request.match_info["segmentId"]
            ),
        )

    async def _current_version(self, request: web.Request) -> int | None:
        try:
            return (await self._get(request)).metadata.version
        except RpcFailed as failure:
            if failure.error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

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
        segment = await self._get(request)
        version = segment.metadata.version
        unchanged = not_modified(request, version)
        if unchanged is not None:
            return unchanged
        body = render.segment(segment)
        paths = fields_of(request)
        return web.json_response(
            render.select(body, paths) if paths else body, headers={"ETag": etag(version)}
        )

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
                **paging_fields(request),
            ),
        )
        bodies = [render.segment(segment) for segment in answer.segments]
        return listing(request, bodies, answer)

    # Bulk: each item is its own call, so each is decided (and reported) on its own.

    async def bulk_create(self, request: web.Request) -> web.StreamResponse:
        valid, results = parse_items(await json_body(request), SegmentCreation)
        for index, creation in valid:
            try:
                created = await self._create(request, creation)
            except RpcFailed as failure:
                results[index] = _failed_item(index, failure, creation.id)
                continue
            results[index] = {"index": index, "id": created.id, "code": 201, "status": "Created"}
        return _multi_status(results)

    async def bulk_upsert(self, request: web.Request) -> web.StreamResponse:
        valid, results = parse_items(await json_body(request), SegmentCreation)
        for index, item in valid:
            if not item.id:
                results[index] = {
                    "index": index,
                    "code": 400,
                    "status": "Bad Request",
                    "message": "id: is required",
                }
                continue
            try:
                answer = await self.client.call(
                    request,
                    self.client.segments.UpsertSegment,
                    _upsert_request(request.match_info["tenant"], item.id, item),
                )
            except RpcFailed as failure:
                results[index] = _failed_item(index, failure, item.id)
                continue
            code = 201 if answer.created else 204
            results[index] = {"index": index, "id": item.id, "code": code, "status": _phrase(code)}
        return _multi_status(results)

    async def bulk_delete(self, request: web.Request) -> web.StreamResponse:
        ids = bulk_items(await json_body(request))
        force = _force(request)
        results: dict[int, dict[str, Any]] = {}
        for index, segment_id in enumerate(ids, start=1):
            if not isinstance(segment_id, str):
                results[index] = {
                    "index": index,
                    "code": 400,
                    "status": "Bad Request",
                    "message": "id: must be a string",
                }
                continue
            try:
                await self.client.call(
                    request,
                    self.client.segments.DeleteSegment,
                    segment_pb2.DeleteSegmentRequest(
                        tenant=request.match_info["tenant"], segment_id=segment_id, force=force
                    ),
                )
            except RpcFailed as failure:
                results[index] = _failed_item(index, failure, segment_id)
                continue
            results[index] = {"index": index, "id": segment_id, "code": 204, "status": "No Content"}
        return _multi_status(results)


def _multi_status(results: dict[int, dict[str, Any]]) -> web.Response:
    return web.json_response([results[index] for index in sorted(results)], status=207)
