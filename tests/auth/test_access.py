"""Who gets what, over gRPC and over REST: tokens, tenants, scopes and the customer's view.

The expected scopes are written out here for gRPC, and taken from the official Emporix file for
REST, rather than read from the service's own table, so that a wrong table fails.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
import yaml
from customersegment.v1 import assignment_pb2 as pb
from customersegment.v1 import directory_pb2, events_pb2, segment_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from tests.auth.keys import claims, hs256, unsigned
from tests.conftest import Stubs
from tests.helpers import bearer, expect_error

READ, READ_OWN, MANAGE = (
    "customersegment.segment_read",
    "customersegment.segment_read_own",
    "customersegment.segment_manage",
)
UNAUTHORIZED_BODY = {
    "fault": {
        "faultstring": "Invalid access token",
        "detail": {"errorcode": "oauth.v2.InvalidAccessToken"},
    }
}
EMPORIX_FILE = Path(__file__).parents[1] / "contract" / "emporix-customer-segment-api.yml"


def _timestamp(offset_seconds: int) -> Timestamp:
    moment = Timestamp()
    moment.FromSeconds(int(time.time()) + offset_seconds)
    return moment


@pytest_asyncio.fixture(loop_scope="session")
async def world(stubs: Stubs, tenant: str, segment_id: str) -> str:
    """Segment `gold` (ACTIVE) holds c1 (B2C, and for le1 and le2) and c2; c1 is also in an
    INACTIVE, an expired and a not-yet-valid segment; `silver` (ACTIVE) holds only c2."""
    segments = {
        "inactive": segment_pb2.Segment(status=segment_pb2.SEGMENT_STATUS_INACTIVE),
        "expired": segment_pb2.Segment(
            status=segment_pb2.SEGMENT_STATUS_ACTIVE,
            validity=segment_pb2.Validity(end_time=_timestamp(-3600)),
        ),
        "future": segment_pb2.Segment(
            status=segment_pb2.SEGMENT_STATUS_ACTIVE,
            validity=segment_pb2.Validity(start_time=_timestamp(3600)),
        ),
        "silver": segment_pb2.Segment(status=segment_pb2.SEGMENT_STATUS_ACTIVE),
    }
    for name, segment in segments.items():
        segment.id, segment.site_code = name, "main"
        segment.name["en"] = name
        await stubs.segments.CreateSegment(
            segment_pb2.CreateSegmentRequest(tenant=tenant, segment=segment)
        )
    keys = [(segment_id, "c1", ""), (segment_id, "c1", "le1"), (segment_id, "c1", "le2")]
    keys += [(segment_id, "c2", ""), ("silver", "c2", "")]
    keys += [(name, "c1", "") for name in ("inactive", "expired", "future")]
    for assigned_to, customer, legal_entity in keys:
        await stubs.assignments.UpsertAssignment(
            pb.UpsertAssignmentRequest(
                tenant=tenant,
                segment_id=assigned_to,
                customer_id=customer,
                legal_entity_id=legal_entity,
                mixins_json='{"secret": "of ' + customer + '"}',
            )
        )
    return segment_id


# --- gRPC -------------------------------------------------------------------------------------

GrpcCall = Callable[[Stubs, str, str, list[tuple[str, str]]], Awaitable[Any]]


async def _drain(call: Any) -> list[Any]:
    return [message async for message in call]


def _stream(tenant: str, segment: str, item: Any) -> Any:
    async def messages() -> Any:
        yield item(tenant=tenant, segment_id=segment)

    return messages()


GRPC_OPERATIONS: dict[str, tuple[frozenset[str], GrpcCall]] = {
    "GetAssignment": (
        frozenset({READ}),
        lambda s, t, g, m: s.assignments.GetAssignment(
            pb.GetAssignmentRequest(tenant=t, segment_id=g, customer_id="c1"), metadata=m
        ),
    ),
    "ListAssignments": (
        frozenset({READ, READ_OWN}),
        lambda s, t, g, m: s.assignments.ListAssignments(
            pb.ListAssignmentsRequest(tenant=t, segment_id=g), metadata=m
        ),
    ),
    "SearchAssignments": (
        frozenset({READ}),
        lambda s, t, g, m: s.assignments.SearchAssignments(
            pb.SearchAssignmentsRequest(tenant=t, segment_id=g, q="customerId:c1"), metadata=m
        ),
    ),
    "UpsertAssignment": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.assignments.UpsertAssignment(
            pb.UpsertAssignmentRequest(tenant=t, segment_id=g, customer_id="new"), metadata=m
        ),
    ),
    "RemoveAssignment": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.assignments.RemoveAssignment(
            pb.RemoveAssignmentRequest(tenant=t, segment_id=g, customer_id="new"), metadata=m
        ),
    ),
    "BulkUpsertAssignments": (
        frozenset({MANAGE}),
        lambda s, t, g, m: _drain(
            s.assignments.BulkUpsertAssignments(
                pb.BulkUpsertAssignmentsRequest(
                    tenant=t, segment_id=g, items=[pb.BulkUpsertItem(customer_id="new")]
                ),
                metadata=m,
            )
        ),
    ),
    "BulkRemoveAssignments": (
        frozenset({MANAGE}),
        lambda s, t, g, m: _drain(
            s.assignments.BulkRemoveAssignments(
                pb.BulkRemoveAssignmentsRequest(
                    tenant=t, segment_id=g, items=[pb.BulkRemoveItem(customer_id="new")]
                ),
                metadata=m,
            )
        ),
    ),
    "StreamUpsertAssignments": (
        frozenset({MANAGE}),
        lambda s, t, g, m: _drain(
            s.assignments.StreamUpsertAssignments(
                _stream(t, g, pb.StreamUpsertAssignmentsRequest), metadata=m
            )
        ),
    ),
    "StreamRemoveAssignments": (
        frozenset({MANAGE}),
        lambda s, t, g, m: _drain(
            s.assignments.StreamRemoveAssignments(
                _stream(t, g, pb.StreamRemoveAssignmentsRequest), metadata=m
            )
        ),
    ),
    "CreateSegment": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.segments.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                tenant=t, segment=segment_pb2.Segment(name={"en": "N"}, site_code="main")
            ),
            metadata=m,
        ),
    ),
    "UpsertSegment": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.segments.UpsertSegment(
            segment_pb2.UpsertSegmentRequest(
                tenant=t,
                segment_id="scratch",
                segment=segment_pb2.Segment(name={"en": "N"}, site_code="main"),
            ),
            metadata=m,
        ),
    ),
    "PatchSegment": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.segments.PatchSegment(
            segment_pb2.PatchSegmentRequest(
                tenant=t,
                segment_id=g,
                operations=[
                    segment_pb2.JsonPatchOperation(
                        op="replace", path="/siteCode", value_json='"main"'
                    )
                ],
            ),
            metadata=m,
        ),
    ),
    "GetSegment": (
        frozenset({READ, READ_OWN}),
        lambda s, t, g, m: s.segments.GetSegment(
            segment_pb2.GetSegmentRequest(tenant=t, segment_id=g), metadata=m
        ),
    ),
    "ListSegments": (
        frozenset({READ, READ_OWN}),
        lambda s, t, g, m: s.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(tenant=t), metadata=m
        ),
    ),
    "DeleteSegment": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.segments.DeleteSegment(
            segment_pb2.DeleteSegmentRequest(tenant=t, segment_id="inactive", force=True),
            metadata=m,
        ),
    ),
    "BulkCreateSegments": (
        frozenset({MANAGE}),
        lambda s, t, g, m: _drain(
            s.segments.BulkCreateSegments(
                segment_pb2.BulkCreateSegmentsRequest(
                    tenant=t, segments=[segment_pb2.Segment(name={"en": "N"}, site_code="main")]
                ),
                metadata=m,
            )
        ),
    ),
    "BulkUpsertSegments": (
        frozenset({MANAGE}),
        lambda s, t, g, m: _drain(
            s.segments.BulkUpsertSegments(
                segment_pb2.BulkUpsertSegmentsRequest(
                    tenant=t,
                    items=[
                        segment_pb2.BulkUpsertSegmentsItem(
                            segment=segment_pb2.Segment(
                                id="scratch", name={"en": "N"}, site_code="main"
                            )
                        )
                    ],
                ),
                metadata=m,
            )
        ),
    ),
    "BulkDeleteSegments": (
        frozenset({MANAGE}),
        lambda s, t, g, m: _drain(
            s.segments.BulkDeleteSegments(
                segment_pb2.BulkDeleteSegmentsRequest(
                    tenant=t, segment_ids=["inactive"], force=True
                ),
                metadata=m,
            )
        ),
    ),
    "UpsertCustomer": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.directory.UpsertCustomer(
            directory_pb2.UpsertCustomerRequest(tenant=t, customer_id="c9", first_name="F"),
            metadata=m,
        ),
    ),
    "UpsertLegalEntity": (
        frozenset({MANAGE}),
        lambda s, t, g, m: s.directory.UpsertLegalEntity(
            directory_pb2.UpsertLegalEntityRequest(tenant=t, legal_entity_id="l9", name="N"),
            metadata=m,
        ),
    ),
    # The world's writes are events already: the first one comes at once.
    "WatchEvents": (
        frozenset({READ}),
        lambda s, t, g, m: _first_event(
            s.events.WatchEvents(events_pb2.WatchEventsRequest(tenant=t), metadata=m)
        ),
    ),
}


async def _first_event(call: Any) -> Any:
    try:
        return await call.read()
    finally:
        call.cancel()


def test_every_rpc_of_the_services_is_in_the_matrix() -> None:
    from customersegment.v1 import assignment_pb2, directory_pb2, events_pb2, segment_pb2

    from customer_segments.grpc.server import SERVICE_NAMES

    methods = {
        method.name
        for module in (assignment_pb2, segment_pb2, directory_pb2, events_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        if service.full_name in SERVICE_NAMES
        for method in service.methods
    }
    assert methods == set(GRPC_OPERATIONS)


def _metadata(authorization: str | None) -> list[tuple[str, str]]:
    return [] if authorization is None else [("authorization", authorization)]


def _bad_tokens(tenant: str) -> dict[str, str | None]:
    return {
        "none": None,
        "garbage": "Bearer garbage",
        "other key": f"Bearer {hs256(claims(tenant), 'a-key-that-is-not-the-server-secret-000')}",
        "alg none": f"Bearer {unsigned(claims(tenant))}",
        "expired": f"Bearer {hs256(claims(tenant, ttl=-120))}",
        "not yet valid": f"Bearer {hs256(claims(tenant, nbf=int(time.time()) + 600))}",
        # These three once gave INTERNAL / 500 or were accepted.
        "alg a list": f"Bearer {hs256(claims(tenant), header={'alg': ['HS256']})}",
        "exp 10**400": f"Bearer {hs256({**claims(tenant), 'exp': 10**400})}",
        "exp a string": f"Bearer {hs256({**claims(tenant), 'exp': str(int(time.time()) + 600)})}",
    }


@pytest.mark.parametrize("operation", GRPC_OPERATIONS)
async def test_grpc_bad_tokens_are_unauthenticated(
    bare_stubs: Stubs, tenant: str, world: str, operation: str
) -> None:
    call = GRPC_OPERATIONS[operation][1]
    for name, authorization in _bad_tokens(tenant).items():
        error = await expect_error(
            call(bare_stubs, tenant, world, _metadata(authorization)),
            grpc.StatusCode.UNAUTHENTICATED,
            "Invalid access token",
        )
        assert "secret" not in (error.details() or ""), name


@pytest.mark.parametrize("operation", GRPC_OPERATIONS)
async def test_grpc_token_of_another_tenant_is_denied(
    bare_stubs: Stubs, tenant: str, world: str, operation: str
) -> None:
    call = GRPC_OPERATIONS[operation][1]
    await expect_error(
        call(bare_stubs, tenant, world, _metadata(bearer("another"))),
        grpc.StatusCode.PERMISSION_DENIED,
        f"not valid for tenant '{tenant}'",
    )


@pytest.mark.parametrize("rpc", ["StreamUpsertAssignments", "StreamRemoveAssignments"])
async def test_grpc_a_later_stream_message_of_another_tenant_is_denied(
    bare_stubs: Stubs, tenant: str, world: str, rpc: str
) -> None:
    """Every message of a client stream is checked, not only the first one."""
    upsert = rpc == "StreamUpsertAssignments"
    message = pb.StreamUpsertAssignmentsRequest if upsert else pb.StreamRemoveAssignmentsRequest

    async def messages() -> Any:
        yield message(tenant=tenant, segment_id=world)
        later = message(tenant="another", segment_id=world)
        later.items.add(customer_id=customer)
        yield later

    # c9 is not in the segment (an upsert would add it), c1 is (a remove would take it out).
    customer = "c9" if upsert else "c1"
    call = getattr(bare_stubs.assignments, rpc)
    await expect_error(
        _drain(call(messages(), metadata=_metadata(bearer(tenant, MANAGE)))),
        grpc.StatusCode.PERMISSION_DENIED,
        "not valid for tenant 'another'",
    )
    listed = await bare_stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=world, q=f"customerId:{customer}"),
        metadata=_metadata(bearer(tenant, READ)),
    )
    assert len(listed.assignments) == (0 if upsert else 3)  # c1: B2C, le1, le2


MALFORMED: dict[str, GrpcCall] = {
    "GetAssignment": lambda s, t, g, m: s.assignments.GetAssignment(
        pb.GetAssignmentRequest(tenant=t, segment_id=g), metadata=m
    ),
    "ListAssignments": lambda s, t, g, m: s.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=t, segment_id=g, page_size=5000), metadata=m
    ),
    "UpsertAssignment": lambda s, t, g, m: s.assignments.UpsertAssignment(
        pb.UpsertAssignmentRequest(tenant=t, segment_id=g, customer_id="c1", mixins_json="["),
        metadata=m,
    ),
    "UpsertSegment": lambda s, t, g, m: s.segments.UpsertSegment(
        segment_pb2.UpsertSegmentRequest(tenant=t, segment_id=g, segment=segment_pb2.Segment()),
        metadata=m,
    ),
    "PatchSegment": lambda s, t, g, m: s.segments.PatchSegment(
        segment_pb2.PatchSegmentRequest(
            tenant=t,
            segment_id=g,
            operations=[segment_pb2.JsonPatchOperation(op="add", path="/x", value_json="{")],
        ),
        metadata=m,
    ),
    "ListSegments": lambda s, t, g, m: s.segments.ListSegments(
        segment_pb2.ListSegmentsRequest(tenant=t, page_number=-1), metadata=m
    ),
}


@pytest.mark.parametrize("operation", MALFORMED)
async def test_grpc_a_refused_caller_is_refused_whatever_it_sent(
    bare_stubs: Stubs, tenant: str, world: str, operation: str
) -> None:
    """The caller is checked before the request is: a refused caller learns nothing from
    validation, and gets the same answer as with a valid request."""
    call = MALFORMED[operation]
    await expect_error(
        call(bare_stubs, tenant, world, _metadata(bearer("another"))),
        grpc.StatusCode.PERMISSION_DENIED,
        f"not valid for tenant '{tenant}'",
    )
    await expect_error(
        call(bare_stubs, tenant, world, _metadata(bearer(tenant))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


@pytest.mark.parametrize("scope", [READ, READ_OWN, MANAGE, "customersegment.other"])
@pytest.mark.parametrize("operation", GRPC_OPERATIONS)
async def test_grpc_each_scope_against_each_operation(
    bare_stubs: Stubs, tenant: str, world: str, operation: str, scope: str
) -> None:
    allowed, call = GRPC_OPERATIONS[operation]
    metadata = _metadata(bearer(tenant, scope, sub="c1"))
    if scope in allowed:
        await call(bare_stubs, tenant, world, metadata)  # succeeds
    else:
        await expect_error(
            call(bare_stubs, tenant, world, metadata), grpc.StatusCode.PERMISSION_DENIED
        )


# --- the customer's own view ------------------------------------------------------------------


async def _own_keys(
    stubs: Stubs, tenant: str, segment: str, **claims_: Any
) -> list[tuple[str, str]]:
    listed = await stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment),
        metadata=_metadata(bearer(tenant, READ_OWN, **claims_)),
    )
    return [(a.customer.id, a.legal_entity.id) for a in listed.assignments]


async def test_a_customer_lists_only_their_own_assignments(
    bare_stubs: Stubs, tenant: str, world: str
) -> None:
    assert await _own_keys(bare_stubs, tenant, world, sub="c1") == [("c1", "")]
    assert await _own_keys(bare_stubs, tenant, world, sub="c2") == [("c2", "")]
    assert await _own_keys(bare_stubs, tenant, world, sub="c1", legal_entity_id="le2") == [
        ("c1", "le2")
    ]
    # A B2B token of another legal entity, and a customer with no assignment: the segment is
    # not in their view (see the next tests).
    for claims_ in ({"sub": "c1", "legal_entity_id": "le3"}, {"sub": "c3"}):
        await expect_error(
            _own_keys(bare_stubs, tenant, world, **claims_), grpc.StatusCode.PERMISSION_DENIED
        )


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("customerId:c2", []),
        ("customerId:(c1,c2)", [("c1", "")]),
        ("customerId:~.*", [("c1", "")]),
        ("legalEntityId:exists", []),  # a B2C token never sees B2B assignments
        ('mixins.secret:"of c2"', []),
        ('mixins.secret:"of c1"', [("c1", "")]),
    ],
)
async def test_a_customer_query_cannot_widen_the_view(
    bare_stubs: Stubs, tenant: str, world: str, q: str, expected: list[tuple[str, str]]
) -> None:
    listed = await bare_stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=world, q=q, include_total_count=True),
        metadata=_metadata(bearer(tenant, READ_OWN, sub="c1")),
    )
    keys = [(a.customer.id, a.legal_entity.id) for a in listed.assignments]
    assert keys == expected and listed.total_count == len(expected)


# Outside a customer's view: a segment that does not exist, one not active now, an active one
# the customer is not in (silver), and one they are in only for another legal entity (gold
# for a token of le3).
OUTSIDE_THE_VIEW = [
    ("nosuch", None),
    ("inactive", None),
    ("expired", None),
    ("future", None),
    ("silver", None),
    ("gold", "le3"),
]


async def test_a_customer_gets_one_answer_for_every_segment_outside_their_view(
    bare_stubs: Stubs, tenant: str, world: str
) -> None:
    """So that a customer cannot probe which segments exist, or which are active."""
    answers = set()
    for segment, legal_entity_id in OUTSIDE_THE_VIEW:
        metadata = _metadata(bearer(tenant, READ_OWN, sub="c1", legal_entity_id=legal_entity_id))
        for call in (
            bare_stubs.assignments.ListAssignments(
                pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment), metadata=metadata
            ),
            bare_stubs.assignments.ListAssignments(
                pb.ListAssignmentsRequest(tenant=tenant, segment_id=segment, q="customerId:c1"),
                metadata=metadata,
            ),
            bare_stubs.segments.GetSegment(
                segment_pb2.GetSegmentRequest(tenant=tenant, segment_id=segment),
                metadata=metadata,
            ),
        ):
            error = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
            # Each call's own request id aside, the answers are one and the same.
            metadata_items: Any = error.trailing_metadata() or ()  # grpc-stubs: not iterable
            trailers = [(key, value) for key, value in metadata_items if key != "x-request-id"]
            answers.add((error.details(), tuple(trailers)))
        listed = await bare_stubs.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(
                tenant=tenant, q=f"id:{segment}", include_total_count=True
            ),
            metadata=metadata,
        )
        assert (list(listed.segments), listed.total_count) == ([], 0), segment
    assert len(answers) == 1, answers
    # Inside the view a q that matches nothing is an empty page, as for any reader.
    page = await bare_stubs.assignments.ListAssignments(
        pb.ListAssignmentsRequest(tenant=tenant, segment_id=world, q="customerId:c2"),
        metadata=_metadata(bearer(tenant, READ_OWN, sub="c1")),
    )
    assert list(page.assignments) == []


async def test_a_customer_token_without_sub_reads_nothing(
    bare_stubs: Stubs, tenant: str, world: str
) -> None:
    await expect_error(
        bare_stubs.assignments.ListAssignments(
            pb.ListAssignmentsRequest(tenant=tenant, segment_id=world),
            metadata=_metadata(bearer(tenant, READ_OWN)),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "claim 'sub'",
    )


async def test_a_customer_cannot_get_another_customers_assignment(
    bare_stubs: Stubs, tenant: str, world: str
) -> None:
    for customer in ("c2", "c1"):  # a single GET needs segment_read, even for one's own
        await expect_error(
            bare_stubs.assignments.GetAssignment(
                pb.GetAssignmentRequest(tenant=tenant, segment_id=world, customer_id=customer),
                metadata=_metadata(bearer(tenant, READ_OWN, sub="c1")),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )


async def test_a_customer_sees_only_the_active_segments_they_are_in(
    bare_stubs: Stubs, tenant: str, world: str
) -> None:
    async def segment_ids(token: str, customer_id: str = "") -> list[str]:
        listed = await bare_stubs.segments.ListSegments(
            segment_pb2.ListSegmentsRequest(tenant=tenant, customer_id=customer_id),
            metadata=_metadata(token),
        )
        return sorted(segment.id for segment in listed.segments)

    assert await segment_ids(bearer(tenant, READ_OWN, sub="c1")) == [world]
    assert await segment_ids(bearer(tenant, READ_OWN, sub="c2")) == [world, "silver"]
    assert await segment_ids(bearer(tenant, READ_OWN, sub="c1", legal_entity_id="le1")) == [world]
    assert await segment_ids(bearer(tenant, READ_OWN, sub="c1", legal_entity_id="le9")) == []
    assert await segment_ids(bearer(tenant, READ_OWN, sub="c2"), customer_id="c2") == [
        world,
        "silver",
    ]
    # Everything the tenant has, for a reader.
    assert len(await segment_ids(bearer(tenant, READ))) == 5
    await expect_error(
        segment_ids(bearer(tenant, READ_OWN, sub="c1"), customer_id="c2"),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        bare_stubs.segments.GetSegment(
            segment_pb2.GetSegmentRequest(tenant=tenant, segment_id="silver"),
            metadata=_metadata(bearer(tenant, READ_OWN, sub="c1")),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )


# --- audit log --------------------------------------------------------------------------------


async def test_writes_are_logged_with_tenant_subject_and_request_id_never_the_token(
    bare_stubs: Stubs, tenant: str, world: str, caplog: pytest.LogCaptureFixture
) -> None:
    authorization = bearer(tenant, MANAGE, sub="importer-7")
    metadata = [("authorization", authorization), ("x-request-id", "req-42")]
    with caplog.at_level(logging.INFO, logger="customer_segments.audit"):
        await bare_stubs.assignments.UpsertAssignment(
            pb.UpsertAssignmentRequest(tenant=tenant, segment_id=world, customer_id="c5"),
            metadata=metadata,
        )
        await bare_stubs.assignments.GetAssignment(
            pb.GetAssignmentRequest(tenant=tenant, segment_id=world, customer_id="c5"),
            metadata=_metadata(bearer(tenant, READ)),
        )
        # Refused attempts are logged too: a missing scope, another tenant.
        for token_, target in ((bearer(tenant, READ), tenant), (bearer("intruder"), tenant)):
            await expect_error(
                bare_stubs.assignments.RemoveAssignment(
                    pb.RemoveAssignmentRequest(tenant=target, segment_id=world, customer_id="c5"),
                    metadata=_metadata(token_),
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            )
    # Only the audit logger's: other tests of this process may have turned the access log on.
    lines = [r.getMessage() for r in caplog.records if r.name == "customer_segments.audit"]
    # A call without x-request-id gets one the server made.
    made = re.compile(r"request_id='[0-9a-f]{32}'")
    assert [made.sub("request_id=<made>", line) for line in lines] == [
        f"write UpsertAssignment tenant={tenant} subject='importer-7' request_id='req-42' "
        f"segment='{world}' outcome=ok",
        f"write RemoveAssignment tenant={tenant} subject=None request_id=<made> "
        f"segment='{world}' outcome=PermissionDenied",
        f"write RemoveAssignment tenant=intruder requested_tenant='{tenant}' subject=None "
        f"request_id=<made> segment='{world}' outcome=PermissionDenied",
    ]
    token = authorization.split()[1]
    assert all(token not in line and token[-20:] not in line for line in lines)


# --- REST -------------------------------------------------------------------------------------


def _emporix_operations() -> list[tuple[str, str, frozenset[str]]]:
    document = yaml.safe_load(EMPORIX_FILE.read_text())
    operations = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            tags = operation.get("tags", []) if isinstance(operation, dict) else []
            if not {"Customers Assignments", "Segments"} & set(tags) or path.endswith("/match"):
                continue
            scopes = frozenset(operation["security"][0]["CustomerAccessToken"])
            operations.append((method.upper(), path, scopes))
    return operations


REST_OPERATIONS = _emporix_operations()


def _rest_request(method: str, path: str, tenant: str, segment: str) -> tuple[str, Any]:
    """A valid request on existing data: what a caller with the right scope gets an answer to."""
    url = path.format(tenant=tenant, segmentId=segment, customerId="c1", legalEntityId="le1")
    segment_body = {"name": {"en": "N"}, "siteCode": "main"}
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/segments"): segment_body,
        ("POST", "/segments/search"): {"q": "status:ACTIVE"},
        ("PUT", "/segments/{segmentId}"): {**segment_body, "status": "ACTIVE"},
        ("PATCH", "/segments/{segmentId}"): [
            {"op": "replace", "path": "/siteCode", "value": "main"}
        ],
        ("POST", "/segments/bulk"): [segment_body],
        ("PUT", "/segments/bulk"): [{**segment_body, "id": "scratch"}],
        ("DELETE", "/segments/bulk"): ["scratch"],
        ("POST", "/customers/search"): {"q": "customerId:c1"},
        ("PUT", "/customers/{customerId}"): {},
        ("PUT", "/customers/{customerId}/{legalEntityId}"): {},
        ("PUT", "/customers/bulk"): [{"customerId": "c7"}],
        ("DELETE", "/customers/bulk"): [{"customerId": "c7"}],
    }
    key = path.removeprefix("/customer-segment/{tenant}").removeprefix("/segments/{segmentId}")
    lookup = (
        key if key.startswith("/customers") else path.removeprefix("/customer-segment/{tenant}")
    )
    body = bodies.get((method, lookup))
    if method == "DELETE" and lookup == "/segments/{segmentId}":
        url = url.replace(f"/segments/{segment}", "/segments/inactive") + "?forceDelete=true"
    return url, body


@pytest.mark.parametrize("scope", [READ, READ_OWN, MANAGE])
@pytest.mark.parametrize(
    ("method", "path", "documented"),
    REST_OPERATIONS,
    ids=[f"{m} {p}" for m, p, _ in REST_OPERATIONS],
)
async def test_rest_each_scope_gets_the_documented_answer(
    bare_http: aiohttp.ClientSession,
    tenant: str,
    world: str,
    method: str,
    path: str,
    documented: frozenset[str],
    scope: str,
) -> None:
    url, body = _rest_request(method, path, tenant, world)
    headers = {"Authorization": bearer(tenant, scope, sub="c1")}
    async with bare_http.request(method, url, json=body, headers=headers) as response:
        text = await response.text()
    answer: Any = json.loads(text) if text else None
    if scope in documented:
        assert response.status < 300, (response.status, answer)
    else:
        assert response.status == 403, (response.status, answer)
        assert answer["code"] == 403 and answer["status"] == "Forbidden", answer
        assert "secret" not in str(answer)


@pytest.mark.parametrize(
    ("method", "path", "documented"),
    REST_OPERATIONS,
    ids=[f"{m} {p}" for m, p, _ in REST_OPERATIONS],
)
async def test_rest_bad_tokens_and_other_tenants(
    bare_http: aiohttp.ClientSession,
    tenant: str,
    world: str,
    method: str,
    path: str,
    documented: frozenset[str],
) -> None:
    url, body = _rest_request(method, path, tenant, world)
    for name, authorization in _bad_tokens(tenant).items():
        headers = {} if authorization is None else {"Authorization": authorization}
        async with bare_http.request(method, url, json=body, headers=headers) as response:
            assert response.status == 401, name
            assert await response.json() == UNAUTHORIZED_BODY, name
    headers = {"Authorization": bearer("another")}
    async with bare_http.request(method, url, json=body, headers=headers) as response:
        assert response.status == 403
        answer = await response.json()
        assert answer["code"] == 403 and "secret" not in str(answer)


async def test_rest_customer_view(
    bare_http: aiohttp.ClientSession, tenant: str, world: str
) -> None:
    base = f"/customer-segment/{tenant}/segments"
    customer = {"Authorization": bearer(tenant, READ_OWN, sub="c1", legal_entity_id="le1")}
    async with bare_http.get(f"{base}/{world}/customers", headers=customer) as response:
        assert response.status == 200
        listed = await response.json()
    assert [(a["customer"]["id"], a["legalEntity"]["id"]) for a in listed] == [("c1", "le1")]
    # One answer for every segment outside the view, whatever the reason (see the gRPC test).
    answers = set()
    for segment, legal_entity_id in OUTSIDE_THE_VIEW:
        token = bearer(tenant, READ_OWN, sub="c1", legal_entity_id=legal_entity_id or "le1")
        for url in (f"{base}/{segment}/customers", f"{base}/{segment}"):
            async with bare_http.get(url, headers={"Authorization": token}) as response:
                answers.add((response.status, await response.text()))
    assert len(answers) == 1, answers
    status, text = answers.pop()
    assert status == 403 and json.loads(text)["code"] == 403 and "secret" not in text
    async with bare_http.get(f"{base}/{world}/customers/c2", headers=customer) as response:
        assert response.status == 403
        assert "c2" not in await response.text()
    async with bare_http.get(base, headers=customer) as response:
        assert [segment["id"] for segment in await response.json()] == [world]
    other_entity = {"Authorization": bearer(tenant, READ_OWN, sub="c1", legal_entity_id="le3")}
    async with bare_http.get(base, headers=other_entity) as response:
        assert response.status == 200 and await response.json() == []
