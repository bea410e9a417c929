"""Conditional requests (RFC 9110 section 13) on the version of an assignment or a segment:
the ETag is the quoted metadata.version."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import grpc
from aiohttp import web

from customer_segments.gateway.grpc_client import RpcFailed
from customer_segments.gateway.requests import BadRequest

# An entity tag of a list: optional W/, then the quoted opaque tag (RFC 9110 section 8.8.3).
_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


# Set on a request whose write carries its If-Match: a version conflict or an absent resource
# (ABORTED, NOT_FOUND) is then 412.
CONDITIONAL = web.RequestKey("conditional", bool)


def etag(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> tuple[bool, list[tuple[bool, str]]]:
    """(`*`, the (weak, opaque) tags) of an If-Match or If-None-Match value; what is not an
    entity tag is skipped (it matches nothing)."""
    if header.strip() == "*":
        return True, []
    return False, [(weak == "W/", opaque) for weak, opaque in _ENTITY_TAG.findall(header)]


def not_modified(request: web.Request, version: int) -> web.Response | None:
    """304 (no body) when If-None-Match matches the current version (weak comparison)."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return None
    anything, tags = _tags(header)
    if anything or any(opaque == str(version) for _, opaque in tags):
        return web.Response(status=304, headers={"ETag": etag(version)})
    return None


def single(request: web.Request, body: dict[str, Any], version: int) -> web.Response:
    """One assignment or segment, with its ETag; 304 when If-None-Match names its version. An
    answer whose `fields` left out metadata.version carries neither (version 0: not sent)."""
    if not version:
        return web.json_response(body)
    unchanged = not_modified(request, version)
    if unchanged is not None:
        return unchanged
    return web.json_response(body, headers={"ETag": etag(version)})


class IfMatch:
    """An If-Match header: `*` (the resource must exist) or the versions one of which the
    stored one must be (strong comparison: a weak tag matches nothing)."""

    def __init__(self, anything: bool, versions: frozenset[int]) -> None:
        self.anything = anything
        self.versions = versions

    def allows(self, version: int) -> bool:
        return self.anything or version in self.versions

    @property
    def single(self) -> int | None:
        """The one version it asks for, which the write itself can check."""
        if self.anything or len(self.versions) != 1:
            return None
        return next(iter(self.versions))


def if_match(request: web.Request) -> IfMatch | None:
    header = request.headers.get("If-Match")
    if header is None:
        return None
    anything, tags = _tags(header)
    versions = frozenset(
        int(opaque)
        for weak, opaque in tags
        if not weak and opaque.isascii() and opaque.isdigit() and len(opaque) < 19
    )
    return IfMatch(anything, versions)


class PreconditionFailed(Exception):
    """The If-Match of the request does not hold: 412."""

    def __init__(self, resource_id: str) -> None:
        super().__init__(
            f"The resource {resource_id} is not at a version the If-Match header allows."
        )
        self.resource_id = resource_id


class Expectation(NamedTuple):
    """What a conditional write asks of the service: the version to find (None: any) and
    whether the resource must exist (never created, never silently absent)."""

    version: int | None
    must_exist: bool


async def expectation(
    condition: IfMatch | None,
    body_version: int | None,
    resource_id: str,
    current_version: Callable[[], Awaitable[int | None]],
) -> Expectation:
    """The service checks it in the write's transaction. With If-Match, a body
    metadata.version it does not allow is 412 at once, as is a list without a strong
    numeric tag. Only a list of several tags is resolved by reading the current version first
    (absent: 412), which the write then requires, so a change in between is still refused."""
    if condition is None:
        return Expectation(body_version, must_exist=False)
    if body_version is not None:
        if not condition.allows(body_version):
            raise PreconditionFailed(resource_id)
        return Expectation(body_version, must_exist=True)
    if condition.anything:
        return Expectation(None, must_exist=True)
    if not condition.versions:
        raise PreconditionFailed(resource_id)
    if condition.single is not None:
        return Expectation(condition.single, must_exist=True)
    current = await current_version()
    if current is None or not condition.allows(current):
        raise PreconditionFailed(resource_id)
    return Expectation(current, must_exist=True)


def refuse_if_match(request: web.Request) -> None:
    """400 for If-Match on a bulk path. Its target is the collection, which has no version;
    each item carries its own metadata.version. Ignoring the header would make a write its
    caller asked to be conditional unconditional, and the Emporix file documents 400 for
    these paths."""
    if "If-Match" in request.headers:
        raise BadRequest(
            "If-Match", "does not apply to a bulk request; give each item its metadata.version"
        )


async def version_if_found(read: Callable[[], Awaitable[int]]) -> int | None:
    """The stored version that `read` (a GET through gRPC) finds; None when the resource does
    not exist."""
    try:
        return await read()
    except RpcFailed as failure:
        if failure.error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
