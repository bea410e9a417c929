"""What both route modules need to read a request: JSON bodies checked by the models, paging
parameters, bulk bodies item by item, and the 400 that names the field."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar
from urllib.parse import unquote_plus, unquote_to_bytes

import grpc
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from customersegment.v1 import assignment_pb2, segment_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from pydantic import BaseModel, ValidationError
from yarl import URL

from customer_segments.domain.validation import MAX_JSON_DEPTH
from customer_segments.gateway.errors import error_response, field_message
from customer_segments.gateway.grpc_client import GrpcClient, Request
from customer_segments.limits import MAX_REQUEST_ID_LENGTH

BULK_LIMIT = 200
Model = TypeVar("Model", bound=BaseModel)


class BadRequest(Exception):
    """A request the gateway cannot translate; answered 400 naming the field."""

    def __init__(self, field: str, problem: str, status: int = 400) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.status = status  # 415 for a body that is not JSON by its Content-Type

    def response(self) -> web.Response:
        return error_response(self.status, str(self), field=self.field, problem=str(self))


# gRPC metadata values are printable ASCII; aiohttp reads any other byte of a header as a
# surrogate escape, which gRPC refuses with an exception.
_METADATA_TEXT = re.compile(r"[\x20-\x7e]*")
# The gRPC server refuses, at random, the metadata of a call over 8 KiB in all (its soft
# limit): a token leaves room for the other headers (about 600 bytes) below it.
MAX_AUTHORIZATION_LENGTH = 7 * 1024
# What aiohttp decodes; with any other value (or several) it would pass the body on unread.
_CONTENT_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})


def request_id(request: web.Request) -> str | None:
    """The caller's X-Request-Id, passed on as gRPC metadata and echoed; None when absent."""
    given = request.headers.get("X-Request-Id")
    if given is None:
        return None
    if not given or len(given) > MAX_REQUEST_ID_LENGTH or not _METADATA_TEXT.fullmatch(given):
        raise BadRequest(
            "X-Request-Id", f"must be 1 to {MAX_REQUEST_ID_LENGTH} printable ASCII characters"
        )
    return given


def check_request(request: web.Request) -> None:
    """Refuses what aiohttp lets through but the gateway cannot pass on: an Authorization
    header gRPC cannot carry (401), a Content-Encoding aiohttp does not decode, and a URL whose
    percent-encoding is not UTF-8 (which yarl keeps as `%FF` in paths, and turns into U+FFFD
    in query strings)."""
    authorization = request.headers.get("Authorization")
    if authorization is not None and (
        len(authorization) > MAX_AUTHORIZATION_LENGTH or not _METADATA_TEXT.fullmatch(authorization)
    ):
        raise web.HTTPUnauthorized()
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _CONTENT_ENCODINGS:
        raise BadRequest("Content-Encoding", "must be gzip, deflate or identity")
    raw_path, _, raw_query = request.raw_path.partition("?")
    if "%" in raw_path or not raw_path.isascii():
        for segment in raw_path.split("/"):
            if not _utf8_once_decoded(segment):
                raise BadRequest(_path_parameter(request, segment), _NOT_UTF8)
    if "%" in raw_query or not raw_query.isascii():
        for pair in raw_query.split("&"):
            name, _, value = pair.partition("=")
            if not _utf8_once_decoded(name):
                raise BadRequest("query", f"a parameter name {_NOT_UTF8}")
            if not _utf8_once_decoded(value):
                raise BadRequest(unquote_plus(name), _NOT_UTF8)


_NOT_UTF8 = "is not UTF-8 once percent-decoded"


def _utf8_once_decoded(text: str) -> bool:
    try:
        unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):  # bytes that are not UTF-8, or escapes
        return False
    return True


def _path_parameter(request: web.Request, segment: str) -> str:
    """The path parameter a raw segment of the path became (yarl keeps bad escapes as text)."""
    decoded = URL("/" + segment, encoded=True).path[1:]
    for name, value in request.match_info.items():
        if value == decoded:
            return name
    return "path"


_MAX_DIGITS = sys.get_int_max_str_digits()


async def json_body(request: web.Request) -> Any:
    """The parsed body; an empty body is None."""
    try:
        raw = await request.read()
    except web.RequestPayloadError as error:
        if isinstance(error.__cause__, ContentEncodingError):
            raise BadRequest(
                "Content-Encoding", "the body is not encoded as this header says"
            ) from None
        raise BadRequest("body", "could not be read (its framing is broken)") from None
    if not raw.strip():
        return None
    _check_media_type(request)
    try:
        # Strictly UTF-8 (RFC 8259): json.loads of bytes also takes UTF-16, and decodes raw
        # surrogate bytes (ED A0 80) into strings that protobuf cannot carry.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest("body", f"is not valid UTF-8 (at byte {error.start})") from None
    try:
        body = json.loads(text)
    except ValueError as error:
        if "integer string conversion" in str(error):  # Python's limit on an int's digits
            raise BadRequest("body", f"has an integer of more than {_MAX_DIGITS} digits") from None
        raise BadRequest("body", f"malformed JSON ({error})") from None
    except RecursionError:
        # Hundreds of levels deep: far past what the service takes (validation.MAX_JSON_DEPTH).
        raise BadRequest(
            "body", f"must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep"
        ) from None
    if b"\\u" in raw.lower() and _has_lone_surrogate(body):
        raise BadRequest("body", "must not contain unpaired UTF-16 surrogates (\\ud800-\\udfff)")
    return body


def _check_media_type(request: web.Request) -> None:
    """415 for a body that says it is something other than JSON in UTF-8; one without a
    Content-Type is read as JSON (the Emporix examples do not always send it)."""
    if "Content-Type" not in request.headers:
        return
    media_type = request.content_type  # lower case, without parameters
    charset = request.charset
    if (media_type == "application/json" or _JSON_SUFFIX.fullmatch(media_type)) and (
        charset is None or charset.lower() in ("utf-8", "utf8")
    ):
        return
    raise BadRequest(
        "Content-Type",
        "must be application/json (or a +json type), in UTF-8 if a charset is given",
        status=415,
    )


_JSON_SUFFIX = re.compile(r"application/[^/;\s]+\+json")


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
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or not digits:
        raise BadRequest(name, "must be a whole number of at least 1")
    # The gRPC field is an int32 (and int() refuses more than 4,300 digits: ValueError).
    if len(digits) > len(str(MAX_INT32)) or int(digits) > MAX_INT32:
        raise BadRequest(name, f"must be at most {MAX_INT32}")
    return int(digits)


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


# What the bulk RPCs stream (each RPC has a message of its own; all hold `results`).
_Answer = TypeVar(
    "_Answer",
    assignment_pb2.BulkUpsertAssignmentsResponse,
    assignment_pb2.BulkRemoveAssignmentsResponse,
    segment_pb2.BulkCreateSegmentsResponse,
    segment_pb2.BulkUpsertSegmentsResponse,
    segment_pb2.BulkDeleteSegmentsResponse,
)


async def multi_status(
    client: GrpcClient,
    request: web.Request,
    method: grpc.aio.UnaryStreamMultiCallable[Request, _Answer],
    message: Request,
    forwarded: list[int],
    results: dict[int, dict[str, Any]],
    rendered: Callable[[Any, int], dict[str, Any]],
) -> web.Response:
    """207 with one entry per request item, in request order, 1-based `index`: the results of
    the items the gateway refused itself, and those the bulk RPC streams back for the
    `forwarded` ones (its n-th item is the request's item forwarded[n - 1])."""
    if forwarded:
        async for batch in client.stream(request, method, message):
            for result in batch.results:
                index = forwarded[result.index - 1]
                results[index] = rendered(result, index)
    return web.json_response([results[index] for index in sorted(results)], status=207)


def bad_item(index: int, error: BadRequest) -> dict[str, Any]:
    return {
        "index": index,
        "code": 400,
        "status": "Bad Request",
        "message": field_message(error.field.split("].", 1)[-1], error.problem),
    }


def read_mask(request: web.Request, rest_to_proto: dict[str, str]) -> FieldMask | None:
    """The `fields` parameter (comma-separated REST paths; empty entries are skipped) as a
    FieldMask of proto paths; None when every field is wanted. An unknown path is 400."""
    given = request.query.get("fields", "")
    paths = [path.strip() for path in given.split(",") if path.strip()]
    if not paths:
        return None
    unknown = [path for path in paths if path not in rest_to_proto]
    if unknown:
        known = ", ".join(rest_to_proto)
        shown = unknown[0][:100]  # echoed, so bounded
        raise BadRequest("fields", f"unknown field {shown!r}; the fields are {known}")
    return FieldMask(paths=[rest_to_proto[path] for path in paths])


def wants_total(request: web.Request) -> bool:
    return request.headers.get("X-Total-Count", "").lower() == "true"


def cursor_parameter(request: web.Request) -> str | None:
    """Which of the cursor parameters (beyond Emporix) the request uses, if any."""
    given = [name for name in ("next", "prev") if name in request.query]
    if len(given) > 1:
        raise BadRequest("next", "next and prev cannot be used together")
    return given[0] if given else None


class PagingFields(TypedDict):
    """Fields that every List request has under the same names (checked where they are
    passed as keywords to a request's constructor)."""

    page_size: int
    page_number: int
    sort: str
    include_total_count: bool
    page_token: str


def paging_fields(request: web.Request) -> PagingFields:
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


def listing(
    request: web.Request,
    bodies: list[dict[str, Any]],
    answer: assignment_pb2.ListAssignmentsResponse
    | assignment_pb2.SearchAssignmentsResponse
    | segment_pb2.ListSegmentsResponse,
) -> web.Response:
    """A page as documented: X-Total-Count when it was asked for (not with a cursor), and the
    cursors of the neighbouring pages."""
    headers: dict[str, str] = {}
    if wants_total(request) and cursor_parameter(request) is None:
        headers["X-Total-Count"] = str(answer.total_count)
    if answer.next_page_token:
        headers["X-Next-Cursor"] = answer.next_page_token
    if answer.previous_page_token:
        headers["X-Prev-Cursor"] = answer.previous_page_token
    return web.json_response(bodies, headers=headers)
