"""The REST gateway of `serve` calls the server's methods in process (grpc/in_process.py); the
standalone `gateway` command calls a server through a real gRPC channel. The same requests,
through one and then the other, get the same answers: statuses, bodies (errors, the fields
they name, bulk results), the headers the gateway derives from gRPC answers, on both
databases. The in-process gateway is the suite's `gateway` fixture (tests/conftest.py), so
every gateway test runs through it; this one pins the two transports to each other."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from customer_segments.gateway.app import Gateway, start_gateway
from customer_segments.grpc.server import GrpcServer
from tests.helpers import admin_token_middleware, bearer

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# Headers an answer's content decides; Date, X-Request-Id and the like differ by design.
COMPARED_HEADERS = ("Content-Type", "ETag", "X-Total-Count", "Location", "Allow", "Vary")


@pytest_asyncio.fixture(loop_scope="session")
async def remote_gateway(grpc_server: GrpcServer) -> AsyncIterator[Gateway]:
    started = await start_gateway(f"127.0.0.1:{grpc_server.port}", "127.0.0.1", 0)
    yield started
    await started.stop()


def requests(tenant: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, options): writes, reads and each kind of failure, in an order whose
    answers depend on what came before."""
    segments = f"/customer-segment/{tenant}/segments"
    customers = f"{segments}/gold/customers"
    reader = {"Authorization": bearer(tenant, "customersegment.segment_read")}
    return [
        ("POST", segments, {"json": {"id": "gold", "name": {"en": "Gold"}, "siteCode": "main"}}),
        ("POST", segments, {"json": {"id": "gold", "name": {"en": "Gold"}, "siteCode": "main"}}),
        ("POST", segments, {"json": {"id": "bad id", "name": {"en": "X"}, "siteCode": "main"}}),
        ("PUT", f"{customers}/c1", {"json": {"mixins": {"a": 1}}}),
        ("PUT", f"{customers}/c1", {"json": {"metadata": {"version": 7}}}),
        ("PUT", f"{customers}/c1", {"json": {}, "headers": {"If-Match": '"99"'}}),
        ("PUT", f"{customers}/c1", {"json": {}, "headers": reader}),
        ("PUT", f"{customers}/c1", {"json": [1, 2]}),
        ("PUT", f"{segments}/none/customers/c1", {"json": {}}),
        ("GET", f"{customers}/c1", {}),
        ("GET", f"{customers}/c1", {"headers": {"Authorization": "Bearer nonsense"}}),
        ("GET", f"{customers}/c2", {}),
        ("GET", f"{customers}/c1?fields=nope", {}),
        (
            "PUT",
            f"{customers}/bulk",
            {"json": [{"customerId": "c2"}, {"customerId": ""}, {"customerId": "c3"}]},
        ),
        (
            "DELETE",
            f"{customers}/bulk",
            {"json": [{"customerId": "c2"}], "headers": {"Authorization": "Bearer nonsense"}},
        ),
        ("GET", f"{customers}?pageSize=2&sort=customer.id", {}),
        ("GET", f"{customers}?next=garbage", {}),
        ("GET", f"{customers}?q=customer.id:c2&includeTotalCount=true", {}),
        ("GET", f"{customers}?q=customer.id:(", {}),
        ("POST", f"{customers}/search", {"json": {"q": "customer.id:c3"}}),
        ("DELETE", f"{customers}/c3", {}),
        ("DELETE", f"{customers}/c3", {}),
        ("GET", f"{segments}/gold", {}),
        ("GET", f"{segments}?customerId=c1", {}),
        ("DELETE", f"{segments}/gold", {}),
        ("GET", "/readyz", {}),
    ]


async def answers(port: int, tenant: str) -> list[tuple[int, dict[str, str], Any]]:
    got = []
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base, middlewares=[admin_token_middleware]) as session:
        for method, path, options in requests(tenant):
            async with session.request(method, path, **options) as response:
                text = (await response.text()).replace(tenant, "TENANT")
                headers = {
                    name: response.headers[name].replace(tenant, "TENANT")
                    for name in COMPARED_HEADERS
                    if name in response.headers
                }
                body = json.loads(TIMESTAMP.sub("T", text)) if text else None
                got.append((response.status, headers, body))
    return got


async def test_the_same_requests_get_the_same_answers_in_process_and_over_grpc(
    gateway: Gateway, remote_gateway: Gateway, tenant: str
) -> None:
    in_process = await answers(gateway.port, tenant + "a")
    over_grpc = await answers(remote_gateway.port, tenant + "b")
    assert len(in_process) == len(requests(tenant))
    for sent, ours, theirs in zip(requests(tenant), in_process, over_grpc, strict=True):
        assert ours == theirs, sent[:2]
    statuses = [status for status, _, _ in in_process]
    # Each kind of answer is there: the comparison is not of two lists of 200s.
    assert {200, 201, 204, 207, 400, 401, 403, 404, 409, 412} <= set(statuses), statuses
