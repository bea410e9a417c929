"""The ten documented Customers Assignments paths."""

from __future__ import annotations

import json
from typing import Any, TypedDict, TypeVar

from aiohttp import web
from customersegment.v1 import assignment_pb2
from pydantic import BaseModel, ValidationError

from customer_segments.gateway import render
from customer_segments.gateway.errors import error_response, rest_field
from customer_segments.gateway.grpc_client import GrpcClient
from customer_segments.gateway.models import (
    CustomerAssignmentRemoveBulk,
    CustomerAssignmentUpsert,
    CustomerAssignmentUpsertBulk,
    Search,
)

BASE = "/customer-segment/{tenant}/segments/{segmentId}/customers"
# A customer id is any path segment but the literal ones of the sibling paths.
CUSTOMER = "{customerId:(?!(?:search|bulk)$)[^/]+}"
BULK_LIMIT = 200
Model = TypeVar("Model", bound=BaseModel)


class BadRequest(Exception):
    """A request the gateway cannot translate; answered 400 naming the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def response(self) -> web.Response:
        return error_response(400, str(self), field=self.field, problem=str(self))


async def json_body(request: web.Request) -> Any:
    """The parsed body; an empty body is None."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("body", f"malformed JSON ({error})") from None


def parsed(model: type[Model], value: Any, prefix: str = "") -> Model:
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise BadRequest(
            prefix + path if path else (prefix.rstrip(".") or "body"), first["msg"]
        ) from None


def _page_parameter(request: web.Request, name: str) -> int:
    text = request.query.get(name)
    if text is None:
        return 0  # not given: the service's default
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(name, "must be a whole number of at least 1")
    return int(text)


def _mixins_json(value: dict[str, Any] | None) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _write_fields(upsert: CustomerAssignmentUpsert) -> dict[str, Any]:
    """The proto fields of what an upsert writes (mixins, metadata.mixins, metadata.version)."""
    metadata = upsert.metadata
    fields: dict[str, Any] = {
        "mixins_json": _mixins_json(upsert.mixins),
        "metadata_mixins_json": _mixins_json(metadata.mixins if metadata else None),
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

    async def get_assignment(self, request: web.Request) -> web.StreamResponse:
        answer = await self.client.call(
            request,
            self.client.assignments.GetAssignment,
            assignment_pb2.GetAssignmentRequest(**_key(request)),
        )
        body = render.assignment(answer)
        fields = request.query.get("fields")
        if fields:
            body = render.select(body, [path.strip() for path in fields.split(",")])
        return web.json_response(body)

    async def upsert_assignment(self, request: web.Request) -> web.StreamResponse:
        upsert: CustomerAssignmentUpsert = parsed(
            CustomerAssignmentUpsert, await json_body(request)
        )
        message = assignment_pb2.UpsertAssignmentRequest(
            **_key(request),
            mixins_json=_mixins_json(upsert.mixins),
            metadata_mixins_json=_mixins_json(upsert.metadata.mixins if upsert.metadata else None),
        )
        if upsert.metadata is not None and upsert.metadata.version is not None:
            message.version = upsert.metadata.version
        answer = await self.client.call(request, self.client.assignments.UpsertAssignment, message)
        return web.Response(status=201 if answer.created else 204)

    async def remove_assignment(self, request: web.Request) -> web.StreamResponse:
        await self.client.call(
            request,
            self.client.assignments.RemoveAssignment,
            assignment_pb2.RemoveAssignmentRequest(**_key(request)),
        )
        return web.Response(status=204)

    async def list_assignments(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, request.query.get("q", ""))

    async def search_assignments(self, request: web.Request) -> web.StreamResponse:
        search: Search = parsed(Search, await json_body(request))
        return await self._list(request, search.q or "")

    async def _list(self, request: web.Request, q: str) -> web.StreamResponse:
        with_total = request.headers.get("X-Total-Count", "").lower() == "true"
        answer = await self.client.call(
            request,
            self.client.assignments.ListAssignments,
            assignment_pb2.ListAssignmentsRequest(
                tenant=request.match_info["tenant"],
                segment_id=request.match_info["segmentId"],
                q=q,
                page_size=_page_parameter(request, "pageSize"),
                page_number=_page_parameter(request, "pageNumber"),
                sort=request.query.get("sort", ""),
                include_total_count=with_total,
            ),
        )
        bodies = [render.assignment(item) for item in answer.assignments]
        fields = request.query.get("fields")
        if fields:
            paths = [path.strip() for path in fields.split(",")]
            bodies = [render.select(body, paths) for body in bodies]
        headers = {"X-Total-Count": str(answer.total_count)} if with_total else None
        return web.json_response(bodies, headers=headers)

    async def bulk_upsert(self, request: web.Request) -> web.StreamResponse:
        valid, results = _parse_items(await json_body(request), CustomerAssignmentUpsertBulk)
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
        valid, results = _parse_items(await json_body(request), CustomerAssignmentRemoveBulk)
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
        method: Any,
        message: Any,
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


def _parse_items(
    body: Any, model: type[Model]
) -> tuple[list[tuple[int, Model]], dict[int, dict[str, Any]]]:
    """Each item of a bulk body checked alone: the 1-based index and model of the good ones,
    and the 400 results of the others."""
    valid: list[tuple[int, Model]] = []
    results: dict[int, dict[str, Any]] = {}
    for index, raw in enumerate(_bulk_items(body), start=1):
        try:
            valid.append((index, parsed(model, raw, f"[{index}].")))
        except BadRequest as error:
            results[index] = _bad_item(index, error)
    return valid, results


def _bulk_items(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise BadRequest("body", "must be a JSON array of items")
    if not body:
        raise BadRequest("body", "must hold at least one item")
    if len(body) > BULK_LIMIT:
        raise BadRequest("body", f"holds {len(body)} items; at most {BULK_LIMIT} are allowed")
    return body


def _bad_item(index: int, error: BadRequest) -> dict[str, Any]:
    field = rest_field(error.field.split("].", 1)[-1])
    return {
        "index": index,
        "code": 400,
        "status": "Bad Request",
        "message": f"{field}: {error.problem}",
    }
