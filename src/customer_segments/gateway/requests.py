"""What both route modules need to read a request: JSON bodies checked by the models, paging
parameters, bulk bodies item by item, and the 400 that names the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from customer_segments.gateway.errors import error_response, rest_field
from customer_segments.gateway.render import select

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
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("body", f"malformed JSON ({error})") from None
    if b"\\u" in raw.lower() and _has_lone_surrogate(body):
        raise BadRequest("body", "must not contain unpaired UTF-16 surrogates (\\ud800-\\udfff)")
    return body


def _has_lone_surrogate(body: Any) -> bool:
    """JSON may escape half a UTF-16 pair; protobuf strings (UTF-8) cannot hold it."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parsed(model: type[Model], value: Any, prefix: str = "") -> Model:
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise BadRequest(
            prefix + path if path else (prefix.rstrip(".") or "body"), first["msg"]
        ) from None


MAX_INT32 = 2**31 - 1


def page_parameter(request: web.Request, name: str) -> int:
    text = request.query.get(name)
    if text is None:
        return 0  # not given: the service's default
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise BadRequest(name, "must be a whole number of at least 1")
    if int(text) > MAX_INT32:  # the gRPC field is an int32
        raise BadRequest(name, f"must be at most {MAX_INT32}")
    return int(text)


def mixins_json(value: dict[str, Any] | None) -> str:
    # Compact: with the default ", " and ": " a 10 MB body of short values grew to 15 MB.
    return "" if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parse_items(
    body: Any, model: type[Model]
) -> tuple[list[tuple[int, Model]], dict[int, dict[str, Any]]]:
    """Each item of a bulk body checked alone: the 1-based index and model of the good ones,
    and the 400 results of the others."""
    valid: list[tuple[int, Model]] = []
    results: dict[int, dict[str, Any]] = {}
    for index, raw in enumerate(bulk_items(body), start=1):
        try:
            valid.append((index, parsed(model, raw, f"[{index}].")))
        except BadRequest as error:
            results[index] = bad_item(index, error)
    return valid, results


def bulk_items(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise BadRequest("body", "must be a JSON array of items")
    if not body:
        raise BadRequest("body", "must hold at least one item")
    if len(body) > BULK_LIMIT:
        raise BadRequest("body", f"holds {len(body)} items; at most {BULK_LIMIT} are allowed")
    return body


def bad_item(index: int, error: BadRequest) -> dict[str, Any]:
    field = rest_field(error.field.split("].", 1)[-1])
    return {
        "index": index,
        "code": 400,
        "status": "Bad Request",
        "message": f"{field}: {error.problem}",
    }


def fields_of(request: web.Request) -> list[str] | None:
    """The `fields` parameter as paths, or None when every field is wanted."""
    fields = request.query.get("fields")
    return [path.strip() for path in fields.split(",")] if fields else None


def wants_total(request: web.Request) -> bool:
    return request.headers.get("X-Total-Count", "").lower() == "true"


def cursor_parameter(request: web.Request) -> str | None:
    """Which of the cursor parameters (beyond Emporix) the request uses, if any."""
    given = [name for name in ("next", "prev") if name in request.query]
    if len(given) > 1:
        raise BadRequest("next", "next and prev cannot be used together")
    return given[0] if given else None


def paging_fields(request: web.Request) -> dict[str, Any]:
    """The paging, sorting and total fields of a List request from the query parameters and
    headers. With a cursor, the page number and X-Total-Count do not apply."""
    cursor = cursor_parameter(request)
    page_token = request.query[cursor] if cursor else ""
    if cursor and not page_token:
        raise BadRequest(cursor, "must not be empty")
    return {
        "page_size": page_parameter(request, "pageSize"),
        "page_number": 0 if cursor else page_parameter(request, "pageNumber"),
        "sort": request.query.get("sort", ""),
        "include_total_count": wants_total(request) and not cursor,
        "page_token": page_token,
    }


def listing(request: web.Request, bodies: list[dict[str, Any]], answer: Any) -> web.Response:
    """A page as documented: the `fields` asked for, X-Total-Count when it was asked for (not
    with a cursor), and the cursors of the neighbouring pages."""
    paths = fields_of(request)
    if paths:
        bodies = [select(body, paths) for body in bodies]
    headers: dict[str, str] = {}
    if wants_total(request) and cursor_parameter(request) is None:
        headers["X-Total-Count"] = str(answer.total_count)
    if answer.next_page_token:
        headers["X-Next-Cursor"] = answer.next_page_token
    if answer.previous_page_token:
        headers["X-Prev-Cursor"] = answer.previous_page_token
    return web.json_response(bodies, headers=headers)
