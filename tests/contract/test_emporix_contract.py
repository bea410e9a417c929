"""Contract tests: the REST gateway against the official Emporix OpenAPI file, with schemathesis.

Schemathesis reads the official Emporix file (a copy beside this test), keeps the operations of
INCLUDED_TAGS and, for each one, sends the file's own examples, boundary cases (its "coverage"
phase) and random requests (positive and negative) to a live gateway in front of the real gRPC
server and database (both backends, through the `store` fixture). Every response must:

- not be a server error (5xx);
- have a status code the file documents for the operation, or one of DELIBERATE_DIFFERENCES
  below, whose body must then still be the file's Error body with the same `code`;
- match the documented content type, headers and body schema for its status.

The path parameters are aimed at data that exists (a real tenant with a real, ACTIVE segment,
seeded assignments and directory names), so that most cases exercise real behaviour and get
real bodies to check; a fixed share keeps the generated tenant or segment id (unknown or
malformed ones, hence 400s and 404s). The choice is a function of the generated case, so a
failing case replays and shrinks the same way.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import requests
import schemathesis
from customersegment.v1 import directory_pb2
from hypothesis import HealthCheck, settings
from requests.structures import CaseInsensitiveDict
from schemathesis import checks
from schemathesis.core.failures import FailureGroup

from customer_segments.gateway.app import Gateway
from tests.conftest import Stubs
from tests.helpers import bearer

# A copy of ../shared/emporix/customer-segment-api.yml, so that a clone tests on its own.
EMPORIX_API = Path(__file__).with_name("emporix-customer-segment-api.yml")

# The tags of the Emporix file whose operations the gateway serves.
INCLUDED_TAGS: tuple[str, ...] = ("Customers Assignments", "Segments")
# Tagged "Segments" but about products and categories (the Items Assignments side): not served,
# as in scripts/build_openapi.py.
NOT_SERVED_PATHS: tuple[str, ...] = ("/customer-segment/{tenant}/segments/match",)

# Random cases per operation (the file's examples and the coverage cases come on top).
MAX_EXAMPLES = 50
# Percent of cases that keep the generated tenant / segment id instead of the real ones.
KEEP_GENERATED_TENANT = 10
KEEP_GENERATED_SEGMENT = 15
# Percent of cases whose customerId (and legalEntityId) are set to the seeded assignment's.
USE_SEEDED_ASSIGNMENT = 50
# Percent of DELETE .../bulk cases that get a body (see `aim`).
DELETE_BULK_WITH_BODY = 75

# The seeded data: the ids of the file's own examples, so that its examples update them.
CUSTOMER = "98029737"
LEGAL_ENTITY = "660af2af69babe3cf6e40771"
OTHER_CUSTOMER = "18249883"  # assigned, but unknown to the directory: comes back as just an id

BASE = "/customer-segment/{tenant}/segments/{segmentId}/customers"
LIST = f"GET {BASE}"
SEARCH = f"POST {BASE}/search"
GET_B2C, PUT_B2C, DELETE_B2C = (
    f"{method} {BASE}/{{customerId}}" for method in ("GET", "PUT", "DELETE")
)
GET_B2B, PUT_B2B, DELETE_B2B = (
    f"{method} {BASE}/{{customerId}}/{{legalEntityId}}" for method in ("GET", "PUT", "DELETE")
)
PUT_BULK, DELETE_BULK = f"PUT {BASE}/bulk", f"DELETE {BASE}/bulk"
SINGLE = frozenset({GET_B2C, PUT_B2C, DELETE_B2C, GET_B2B, PUT_B2B, DELETE_B2B})
ASSIGNMENT_OPERATIONS = frozenset({LIST, SEARCH, PUT_BULK, DELETE_BULK}) | SINGLE

SEGMENTS = "/customer-segment/{tenant}/segments"
CREATE_SEGMENT, LIST_SEGMENTS = f"POST {SEGMENTS}", f"GET {SEGMENTS}"
SEARCH_SEGMENTS = f"POST {SEGMENTS}/search"
GET_SEGMENT, PUT_SEGMENT, PATCH_SEGMENT, DELETE_SEGMENT = (
    f"{method} {SEGMENTS}/{{segmentId}}" for method in ("GET", "PUT", "PATCH", "DELETE")
)
SEGMENT_BULKS = frozenset(f"{method} {SEGMENTS}/bulk" for method in ("POST", "PUT", "DELETE"))
SEGMENT_OPERATIONS = (
    frozenset({CREATE_SEGMENT, LIST_SEGMENTS, SEARCH_SEGMENTS})
    | frozenset({GET_SEGMENT, PUT_SEGMENT, PATCH_SEGMENT, DELETE_SEGMENT})
    | SEGMENT_BULKS
)
ALL_OPERATIONS = ASSIGNMENT_OPERATIONS | SEGMENT_OPERATIONS
WITH_BODY = frozenset({SEARCH, PUT_B2C, PUT_B2B, PUT_BULK, DELETE_BULK}) | (
    SEGMENT_OPERATIONS - {LIST_SEGMENTS, GET_SEGMENT, DELETE_SEGMENT}
)
# Every included operation documents 403 with the Error body (checked below).
ERROR_BODY_STATUS = 403


@dataclass(frozen=True)
class Difference:
    """A status code the service answers on purpose where the Emporix file documents none."""

    status: int
    operations: frozenset[str]
    why: str


DELIBERATE_DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        404,
        ASSIGNMENT_OPERATIONS - {GET_B2C, GET_B2B} | {DELETE_SEGMENT},
        "A call on a segment that does not exist (also: a tenant without it) is 404 naming the "
        "segment (SPEC, Writes); the file documents 404 only on the two single GETs of "
        "assignments and on GET and PATCH of a segment.",
    ),
    Difference(
        400,
        frozenset({LIST, GET_B2C, GET_B2B, DELETE_B2C, DELETE_B2B})
        | {LIST_SEGMENTS, GET_SEGMENT, DELETE_SEGMENT},
        "Malformed input is 400 naming the field (SPEC): a tenant not matching the file's own "
        "pattern, ids with control characters, bad pageSize/pageNumber/sort/q/forceDelete, a "
        "`fields` path the resource does not have; the "
        "file documents 400 only on writes and search. Deleting a segment that still has "
        "assignments without forceDelete=true is a 400 too (FAILED_PRECONDITION).",
    ),
    Difference(
        405,
        ALL_OPERATIONS,
        "A method the path does not have is 405 with an Allow header and the Error body; the "
        "file says nothing about undeclared methods.",
    ),
    Difference(
        413,
        WITH_BODY,
        "A request body over 10 MB is 413 with the Error body (SPEC, Writes).",
    ),
)


def deliberate_difference(operation: str, status: int) -> Difference | None:
    for difference in DELIBERATE_DIFFERENCES:
        if difference.status == status and operation in difference.operations:
            return difference
    return None


def _documented_statuses(case: schemathesis.Case[Any]) -> set[int]:
    codes = case.operation.responses.status_codes
    return {int(code) for code in codes if code.isdigit()}


def _expect_error_body(case: schemathesis.Case[Any], response: schemathesis.Response) -> None:
    """The response's body must be the file's Error body, with `code` equal to the status."""
    status = response.status_code
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (
        f"a {status} must carry the JSON Error body, not {content_type!r}: {response.content!r}"
    )
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"a {status} body is not JSON: {response.content!r}") from None
    # Validated as the documented Error response of the operation (the 403 one).
    stand_in = schemathesis.Response(
        status_code=ERROR_BODY_STATUS,
        headers=response.headers,
        content=response.content,
        request=response.request,
        elapsed=response.elapsed,
        verify=response.verify,
    )
    case.operation.validate_response(stand_in, case=case)  # raises on a mismatch
    assert isinstance(body, dict) and body.get("code") == status, (
        f"the Error body of a {status} must say code {status}: {body}"
    )


def documented_status_or_deliberate_difference(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """schemathesis' status_code_conformance, except for DELIBERATE_DIFFERENCES, whose bodies
    are checked against the file's Error schema instead."""
    status = response.status_code
    if (
        status not in _documented_statuses(case)
        and deliberate_difference(case.operation.label, status) is not None
    ):
        _expect_error_body(case, response)
        return None
    conforms: bool | None = checks.status_code_conformance(ctx, response, case)
    return conforms


def schema_conformance_or_selected_fields(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """schemathesis' response_schema_conformance, except for a successful read with `fields`:
    only the listed fields come back (SPEC), so the schema's required ones may be missing; each
    returned object must then hold nothing but the listed fields."""
    fields = (case.query or {}).get("fields")
    # As the gateway reads it (gateway/requests.py): blank paths are none, so `fields=\r`
    # selects nothing and the whole object comes back.
    paths = [path.strip() for path in str(fields or "").split(",") if path.strip()]
    if not paths or response.status_code != 200:
        conforms: bool | None = checks.response_schema_conformance(ctx, response, case)
        return conforms
    body = response.json()
    listed = {path.split(".")[0] for path in paths}
    for item in body if isinstance(body, list) else [body]:
        assert isinstance(item, dict) and set(item) <= listed, (
            f"fields={fields!r} but the answer holds {item!r}"
        )
    return None


CHECKS = [
    checks.not_a_server_error,
    documented_status_or_deliberate_difference,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    schema_conformance_or_selected_fields,
]


def _load_schema() -> Any:
    schema = schemathesis.openapi.from_path(EMPORIX_API).include(tag=list(INCLUDED_TAGS))
    return schema.exclude(path=list(NOT_SERVED_PATHS))


schema = _load_schema()


def _fingerprint(case: schemathesis.Case[Any]) -> int:
    """A number fixed by the generated case, from which `aim` draws its choices."""
    generated = (case.method, case.path_parameters, case.query, case.headers, case.body)
    return zlib.crc32(repr(generated).encode("utf-8", "surrogatepass"))


def _share(fingerprint: int, slot: int) -> int:
    """An independent 0-99 value per slot."""
    place: int = 100**slot  # an int: slot is never negative
    return (fingerprint // place) % 100


def aim(case: schemathesis.Case[Any], tenant: str, segment_id: str) -> None:
    """Points most cases at the tenant, segment and assignment that exist."""
    fingerprint = _fingerprint(case)
    path = case.path_parameters
    if _share(fingerprint, 0) >= KEEP_GENERATED_TENANT:
        path["tenant"] = tenant
    if _share(fingerprint, 1) >= KEEP_GENERATED_SEGMENT:
        path["segmentId"] = segment_id
    if "customerId" in path and _share(fingerprint, 2) < USE_SEEDED_ASSIGNMENT:
        path["customerId"] = CUSTOMER
        if "legalEntityId" in path:
            path["legalEntityId"] = LEGAL_ENTITY
    if case.operation.label == DELETE_BULK and _share(fingerprint, 3) < DELETE_BULK_WITH_BODY:
        # The file describes this body only in prose, so schemathesis sends none (a 400, which
        # the file documents); most cases get one of the described shape: an assigned item, one
        # never assigned (204 too: DELETE is idempotent) and one without a customer (400).
        case.body = [
            {"customerId": CUSTOMER, "legalEntityId": LEGAL_ENTITY},
            {"customerId": "never-assigned"},
            {"customerId": ""},
        ]
        case.media_type = "application/json"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway_loop(gateway: Gateway) -> asyncio.AbstractEventLoop:
    """The loop the gateway and the gRPC server run on."""
    return asyncio.get_running_loop()


@pytest_asyncio.fixture(loop_scope="session")
async def seeded(stubs: Stubs, http: aiohttp.ClientSession, tenant: str, segment_id: str) -> None:
    """Assignments (B2C and B2B) with mixins, and directory names for some of them."""
    await stubs.directory.UpsertCustomer(
        directory_pb2.UpsertCustomerRequest(
            tenant=tenant,
            customer_id=CUSTOMER,
            first_name="Ann",
            last_name="Lee",
            email="ann.lee@example.com",
        )
    )
    await stubs.directory.UpsertLegalEntity(
        directory_pb2.UpsertLegalEntityRequest(
            tenant=tenant, legal_entity_id=LEGAL_ENTITY, name="ACME Inc."
        )
    )
    mixins = {"segmentAttributes": {"membershipStatus": "PREMIUM", "level": 3}}
    metadata = {"mixins": {"segmentAttributes": "https://example.com/attributes.json"}}
    items = [
        {"customerId": customer, "mixins": mixins, "metadata": metadata}
        | ({"legalEntityId": legal_entity} if legal_entity else {})
        for customer in (CUSTOMER, OTHER_CUSTOMER)
        for legal_entity in ("", LEGAL_ENTITY)
    ]
    url = BASE.format(tenant=tenant, segmentId=segment_id) + "/bulk"
    async with http.put(url, json=items) as response:
        results = await response.json()
    assert response.status == 207 and [r["code"] for r in results] == [201] * 4, results


@schema.parametrize()  # type: ignore[untyped-decorator]  # schemathesis types it as a bare Callable
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_operations_conform_to_emporix(
    case: schemathesis.Case[Any],
    gateway: Gateway,
    gateway_loop: asyncio.AbstractEventLoop,
    tenant: str,
    segment_id: str,
    seeded: None,
) -> None:
    # schemathesis runs async tests on asyncio.get_event_loop(): it must be the gateway's loop,
    # otherwise nothing would answer the requests below.
    assert asyncio.get_running_loop() is gateway_loop, "not on the gateway's event loop"
    aim(case, tenant, segment_id)
    await call_and_check(case, gateway)


async def call_and_check(case: schemathesis.Case[Any], gateway: Gateway) -> None:
    base_url = f"http://127.0.0.1:{gateway.port}"
    # A valid token for the path's tenant, so that every case reaches the service (tests/auth
    # covers the tokens themselves); a 401 below would mean this suite checked nothing else.
    headers = CaseInsensitiveDict(case.headers or {})
    headers["Authorization"] = bearer(case.path_parameters["tenant"])
    case.headers = headers
    # Blocking requests call in a thread, so that the loop keeps serving the gateway meanwhile.
    response = await asyncio.to_thread(case.call, base_url=base_url, timeout=30)
    assert response.status_code != 401, "a valid token was refused"
    try:
        case.validate_response(response, checks=CHECKS, transport_kwargs={"base_url": base_url})
    except FailureGroup as failures:
        # A FailureGroup is a BaseException, which Hypothesis does not shrink; as an
        # AssertionError the report shows the smallest failing request found.
        raise AssertionError(str(failures)) from None


# Requests the file admits that schemathesis never or rarely generates. Lone UTF-16 surrogate
# escapes in JSON strings: valid JSON of the documented types, but not Unicode text (schemathesis
# only generates valid UTF-8). Numbers in non-ASCII digits ("\u00b9" is a digit to str.isdigit,
# not to int()).
LONE_SURROGATE = "\ud800"
SUPERSCRIPT_ONE = "\u00b9"
RARE_REQUESTS = [
    pytest.param(PUT_B2C, None, {"mixins": {"note": LONE_SURROGATE}}, id="PUT-b2c-mixins"),
    pytest.param(
        PUT_B2B,
        None,
        {"metadata": {"mixins": {LONE_SURROGATE: "https://example.com/schema.json"}}},
        id="PUT-b2b-metadata.mixins",
    ),
    pytest.param(PUT_BULK, None, [{"customerId": LONE_SURROGATE}], id="PUT-bulk-customerId"),
    pytest.param(
        PUT_BULK,
        None,
        [{"customerId": CUSTOMER, "mixins": {"note": LONE_SURROGATE}}],
        id="PUT-bulk-mixins",
    ),
    pytest.param(DELETE_BULK, None, [{"customerId": LONE_SURROGATE}], id="DELETE-bulk-customerId"),
    pytest.param(SEARCH, None, {"q": f"customerId:{LONE_SURROGATE}"}, id="POST-search-q"),
    pytest.param(LIST, {"pageNumber": SUPERSCRIPT_ONE}, None, id="GET-list-pageNumber"),
    # Beyond the gRPC int32 of the page number (found by schemathesis as a 500).
    pytest.param(LIST, {"pageNumber": "2200000000"}, None, id="GET-list-pageNumber-int32"),
    pytest.param(
        SEARCH_SEGMENTS, {"pageSize": "4294967296"}, {}, id="POST-segments-search-pageSize-int32"
    ),
    pytest.param(SEARCH, {"pageSize": SUPERSCRIPT_ONE}, {}, id="POST-search-pageSize"),
    pytest.param(LIST, {"q": f"metadata.version:{SUPERSCRIPT_ONE}"}, None, id="GET-list-q-version"),
]


@pytest.mark.parametrize(("operation", "query", "body"), RARE_REQUESTS)
async def test_rare_requests(
    operation: str,
    query: dict[str, str] | None,
    body: Any,
    gateway: Gateway,
    tenant: str,
    segment_id: str,
    seeded: None,
) -> None:
    method, path = operation.split(" ", 1)
    case = schema[path][method].Case(
        path_parameters=_path_parameters(path, tenant, segment_id),
        query=query,
        **({"body": body, "media_type": "application/json"} if body is not None else {}),
    )
    await call_and_check(case, gateway)


def _path_parameters(path: str, tenant: str, segment_id: str) -> dict[str, str]:
    ids = {
        "tenant": tenant,
        "segmentId": segment_id,
        "customerId": CUSTOMER,
        "legalEntityId": LEGAL_ENTITY,
    }
    return {name: value for name, value in ids.items() if f"{{{name}}}" in path}


def _emporix_operations() -> dict[str, dict[str, Any]]:
    document = schema.raw_schema
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and set(INCLUDED_TAGS) & set(operation.get("tags", []))
        if path not in NOT_SERVED_PATHS
    }


def test_the_copy_is_the_official_file() -> None:
    """The copy beside this test must not drift from ../shared (where that is present)."""
    official = (
        Path(__file__).resolve().parents[3] / "shared" / "emporix" / "customer-segment-api.yml"
    )
    if not official.exists():
        pytest.skip(f"{official} is not here to compare with")
    assert EMPORIX_API.read_bytes() == official.read_bytes(), (
        f"{EMPORIX_API.name} differs from {official}: copy the new one, then rerun these tests"
    )


def test_deliberate_differences_are_really_undocumented() -> None:
    """Keeps the allow-list honest: each entry names included operations, and a status the file
    does not document for them (if Emporix documents it one day, the entry goes)."""
    operations = _emporix_operations()
    assert set(operations) == ALL_OPERATIONS
    for name, operation in operations.items():
        assert str(ERROR_BODY_STATUS) in operation["responses"], name
    for difference in DELIBERATE_DIFFERENCES:
        assert difference.operations <= ALL_OPERATIONS, difference
        for name in difference.operations:
            assert str(difference.status) not in operations[name]["responses"], (name, difference)


def _fake_response(status: int, body: bytes, content_type: str = "application/json") -> Any:
    request = requests.Request(
        "GET", "http://127.0.0.1/customer-segment/acme/segments/gold/customers"
    ).prepare()
    headers = {"content-type": [content_type]} if body else {}
    return schemathesis.Response(status, headers, body, request, elapsed=0.01, verify=True)


def _validate(response: Any, operation: str = LIST) -> None:
    method, path = operation.split(" ", 1)
    case = schema[path][method].Case(path_parameters=_path_parameters(path, "acme", "gold"))
    case.validate_response(response, checks=CHECKS)


GOOD_ITEM = b'[{"customer": {"id": "c1"}, "assignmentType": "MANUAL", "metadata": {"version": 1}}]'
ERROR_404 = (
    b'{"code": 404, "status": "Not Found", "message": "No such segment.", "resourceId": "x"}'
)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"code": 500, "status": "Internal Server Error", "message": "Internal error"}'),
        (200, b'[{"customer": "c1"}]'),  # customer must be an object
        (200, b'[{"customer": {"id": "c1"}, "assignmentType": "SOMETIMES"}]'),  # not in the enum
        (200, b'[{"metadata": {"createdAt": "yesterday"}}]'),  # not a date-time
        (418, b'{"code": 418, "status": "I\'m a Teapot", "message": "no"}'),  # not documented
        (404, b'{"code": "404", "message": "No such segment."}'),  # deliberate, but no Error body
        (404, b'{"code": 400, "status": "Bad Request", "message": "x"}'),  # code != status
        (405, b"405: Method Not Allowed"),  # deliberate, but not the JSON Error body
    ],
)
def test_the_checks_catch_bad_responses(status: int, body: bytes) -> None:
    """The checks above can fail: what the gateway must never answer is caught."""
    content_type = "application/json" if body.startswith((b"{", b"[")) else "text/plain"
    with pytest.raises(FailureGroup):
        _validate(_fake_response(status, body, content_type))


def test_the_checks_pass_good_responses() -> None:
    for operation, status, body in (
        (LIST, 200, GOOD_ITEM),
        (LIST, 404, ERROR_404),  # a deliberate difference with the Error body
        (GET_B2C, 404, ERROR_404),  # documented
    ):
        _validate(_fake_response(status, body), operation)


def test_the_fields_check_catches_fields_not_asked_for() -> None:
    path = BASE
    case = schema[path]["GET"].Case(
        path_parameters=_path_parameters(path, "acme", "gold"), query={"fields": "customer.id"}
    )
    case.validate_response(_fake_response(200, b'[{"customer": {"id": "c1"}}]'), checks=CHECKS)
    with pytest.raises(FailureGroup):
        case.validate_response(
            _fake_response(200, b'[{"customer": {"id": "c1"}, "metadata": {"version": 1}}]'),
            checks=CHECKS,
        )
