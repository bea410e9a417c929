"""Segment PATCH by RFC 6902 (add, remove, replace), over gRPC and REST, on both databases."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import grpc
from customersegment.v1 import segment_pb2 as pb

from customer_segments.domain.validation import MAX_JSON_DEPTH
from tests.conftest import Stubs
from tests.helpers import expect_error, field_violations, loads
from tests.integration.test_json_depth import nested_text
from tests.integration.test_segments import segment

MIXINS = {"tags": ["a", "b"], "a/b": 1, "m~n": 2, "n": 5}
Operation = dict[str, Any]


def op(name: str, path: str, *value: Any) -> Operation:
    """An operation as REST takes it; `value` left out for a remove."""
    return {"op": name, "path": path} | ({"value": value[0]} if value else {})


# (operations, the mixins after them)
APPLIED: list[tuple[list[Operation], dict[str, Any]]] = [
    ([op("add", "/mixins/tags/0", "x")], MIXINS | {"tags": ["x", "a", "b"]}),
    ([op("add", "/mixins/tags/1", "x")], MIXINS | {"tags": ["a", "x", "b"]}),
    ([op("add", "/mixins/tags/2", "x")], MIXINS | {"tags": ["a", "b", "x"]}),
    ([op("add", "/mixins/tags/-", "x")], MIXINS | {"tags": ["a", "b", "x"]}),
    ([op("replace", "/mixins/tags/1", "y")], MIXINS | {"tags": ["a", "y"]}),
    ([op("remove", "/mixins/tags/0")], MIXINS | {"tags": ["b"]}),
    (
        [op("add", "/mixins/tags/-", {"k": [1]}), op("add", "/mixins/tags/2/k/-", 2)],
        MIXINS | {"tags": ["a", "b", {"k": [1, 2]}]},
    ),
    # ~1 is "/", ~0 is "~" (RFC 6901).
    ([op("replace", "/mixins/a~1b", 7)], MIXINS | {"a/b": 7}),
    ([op("remove", "/mixins/m~0n")], {k: v for k, v in MIXINS.items() if k != "m~n"}),
    ([op("add", "/mixins/x~1y~0z", 3)], MIXINS | {"x/y~z": 3}),
    ([op("add", "/mixins/~01", 4)], MIXINS | {"~1": 4}),
    # An add of an existing member replaces it.
    ([op("add", "/mixins/n", 6)], MIXINS | {"n": 6}),
    ([op("add", "/mixins/tags", [])], MIXINS | {"tags": []}),
]

# (operations, the field named with the operation's number left out, message fragment)
REFUSED: list[tuple[list[Operation], str, str]] = [
    ([op("add", "/mixins/tags/3", "x")], "path", "outside of list"),
    ([op("replace", "/mixins/tags/2", "x")], "path", "does not exist"),
    ([op("remove", "/mixins/tags/2")], "path", "does not exist"),
    ([op("add", "/mixins/tags/x", "x")], "path", "not a valid sequence index"),
    ([op("add", "/mixins/tags/01", "x")], "path", "not a valid sequence index"),
    ([op("remove", "/mixins/tags/00")], "path", "not a valid sequence index"),
    ([op("add", "/mixins/tags/-1", "x")], "path", "not a valid sequence index"),
    ([op("replace", "/mixins/tags/-", "x")], "path", "'-'"),
    ([op("remove", "/mixins/tags/-")], "path", "'-'"),
    ([op("add", "/mixins/tags/-/x", 1)], "path", "indexing"),
    ([op("add", "/mixins/n/x", 1)], "path", "indexing"),
    ([op("add", "/name/en/x", 1)], "path", "non-container"),
    # A missing parent: an add does not create it.
    ([op("add", "/mixins/no/x", 1)], "path", "parent does not exist"),
    ([op("remove", "/mixins/no/x")], "path", "parent does not exist"),
    ([op("remove", "/mixins/nothing")], "path", "does not exist"),
    ([op("replace", "/mixins/nothing", 1)], "path", "does not exist"),
    ([op("remove", "/validity/from")], "path", "does not exist"),
    ([op("add", "/mixins/a~2", 1)], "path", "not a JSON pointer"),
    ([op("add", "mixins/x", 1)], "path", "not a JSON pointer"),
    ([op("replace", "", {})], "path", "cannot patch"),
    ([op("replace", "/", {})], "path", "cannot patch"),
    ([op("replace", "/id", "other")], "path", "cannot patch"),
    ([op("replace", "/metadata", {})], "path", "cannot patch"),
    ([op("replace", "/metadata/version", 9)], "path", "cannot patch"),
    ([op("add", "/metadata/createdAt", "2020-01-01T00:00:00Z")], "path", "cannot patch"),
    ([op("add", "/metadata/modifiedAt", "2020-01-01T00:00:00Z")], "path", "cannot patch"),
    ([op("add", "/other", 1)], "path", "cannot patch"),
    ([op("add", "/mixin/x", 1)], "path", "cannot patch"),
    ([op("move", "/mixins/n")], "op", ""),
    ([op("copy", "/mixins/n")], "op", ""),
    ([op("test", "/mixins/n", 5)], "op", ""),
    # Still the whole document's limit: the tags array is 2 levels below the document.
    (
        [op("add", "/mixins/tags/-", json.loads(nested_text(MAX_JSON_DEPTH - 1)))],
        "mixins",
        "levels deep",
    ),
]


async def _create(stubs: Stubs, tenant: str, segment_id: str) -> pb.Segment:
    return (
        await stubs.segments.CreateSegment(
            pb.CreateSegmentRequest(
                tenant=tenant, segment=segment(id=segment_id, mixins_json=json.dumps(MIXINS))
            )
        )
    ).segment


def _request(tenant: str, segment_id: str, operations: list[Operation]) -> pb.PatchSegmentRequest:
    return pb.PatchSegmentRequest(
        tenant=tenant,
        segment_id=segment_id,
        operations=[
            pb.JsonPatchOperation(
                op=o["op"],
                path=o["path"],
                value_json=json.dumps(o["value"]) if "value" in o else "",
            )
            for o in operations
        ],
    )


def _field(named: str, number: int, prefix: str) -> str:
    return named if named == "mixins" else f"{prefix}{number}].{named}"


async def test_grpc_patch_follows_rfc_6902(stubs: Stubs, tenant: str) -> None:
    for number, (operations, mixins) in enumerate(APPLIED):
        await _create(stubs, tenant, f"ok{number}")
        patched = (
            await stubs.segments.PatchSegment(_request(tenant, f"ok{number}", operations))
        ).segment
        assert loads(patched.mixins_json) == mixins, operations
    created = await _create(stubs, tenant, "refused")
    for operations, named, fragment in REFUSED:
        # After a valid first operation: the refusal names the second, and neither is written.
        error = await expect_error(
            stubs.segments.PatchSegment(
                _request(tenant, "refused", [op("replace", "/status", "ACTIVE"), *operations])
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            fragment,
        )
        assert field_violations(error) == [_field(named, 2, "operations[")], operations
    got = (
        await stubs.segments.GetSegment(pb.GetSegmentRequest(tenant=tenant, segment_id="refused"))
    ).segment
    assert got == created


async def test_rest_patch_follows_rfc_6902(
    stubs: Stubs, http: aiohttp.ClientSession, tenant: str
) -> None:
    url = f"/customer-segment/{tenant}/segments"
    for number, (operations, mixins) in enumerate(APPLIED):
        await _create(stubs, tenant, f"ok{number}")
        async with http.patch(f"{url}/ok{number}", json=operations) as response:
            assert response.status == 204, await response.text()
        async with http.get(f"{url}/ok{number}") as response:
            assert (await response.json())["mixins"] == mixins, operations
    await _create(stubs, tenant, "refused")
    for operations, named, fragment in REFUSED:
        async with http.patch(f"{url}/refused", json=operations) as response:
            body = await response.json()
        assert response.status == 400, (operations, body)
        assert set(body) == {"code", "status", "message", "details"}, body
        assert body["details"]["field"] == _field(named, 1, "["), (operations, body)
        assert fragment in body["message"], body
    async with http.get(f"{url}/refused") as response:
        body = await response.json()
    assert body["mixins"] == MIXINS and body["metadata"]["version"] == 1
