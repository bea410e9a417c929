"""CORS over real HTTP on both databases: off by default; with configured origins, preflights
answered 204 and answers readable by those origins only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from customer_segments.gateway.app import start_gateway
from customer_segments.grpc.server import GrpcServer
from tests.helpers import admin_token_middleware

SHOP = "https://shop.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization, content-type, if-match",
}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cors_gateways(grpc_server: GrpcServer) -> AsyncIterator[dict[str, str]]:
    """Gateways allowing SHOP and any origin: their base URLs."""
    target = f"127.0.0.1:{grpc_server.port}"
    shop = await start_gateway(target, "127.0.0.1", 0, cors_origins=(SHOP,))
    anyone = await start_gateway(target, "127.0.0.1", 0, cors_origins=("*",))
    yield {"shop": f"http://127.0.0.1:{shop.port}", "*": f"http://127.0.0.1:{anyone.port}"}
    await shop.stop()
    await anyone.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(middlewares=[admin_token_middleware]) as session:
        yield session


def _cors_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def _list(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


async def test_a_preflight_of_an_allowed_origin_is_204_with_what_may_be_sent(
    cors_gateways: dict[str, str], client: aiohttp.ClientSession, tenant: str
) -> None:
    url = f"{cors_gateways['shop']}/customer-segment/{tenant}/segments/gold/customers/c1"
    async with client.options(url, headers={"Origin": SHOP, **PREFLIGHT}) as response:
        assert response.status == 204 and await response.read() == b""
        headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert _list(headers["Access-Control-Allow-Methods"]) >= {
        "get",
        "post",
        "put",
        "patch",
        "delete",
    }
    assert _list(headers["Access-Control-Allow-Headers"]) >= {
        "authorization",
        "content-type",
        "if-match",
        "if-none-match",
        "x-request-id",
    }
    assert "origin" in _list(headers.get("Vary"))


async def test_answers_to_an_allowed_origin_expose_the_headers_errors_included(
    cors_gateways: dict[str, str], client: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    base = f"{cors_gateways['shop']}/customer-segment/{tenant}/segments"
    async with client.get(f"{base}/{segment_id}", headers={"Origin": SHOP}) as ok:
        assert ok.status == 200 and ok.headers["ETag"] == '"1"'
        assert ok.headers["Access-Control-Allow-Origin"] == SHOP
        exposed = _list(ok.headers["Access-Control-Expose-Headers"])
        assert "origin" in _list(ok.headers.get("Vary"))
    assert exposed >= {"etag", "location", "retry-after", "x-request-id", "x-total-count"}
    async with client.get(f"{base}/nosuch", headers={"Origin": SHOP}) as missing:
        assert missing.status == 404 and (await missing.json())["code"] == 404
        assert missing.headers["Access-Control-Allow-Origin"] == SHOP


async def test_an_origin_not_configured_gets_no_cors_headers(
    cors_gateways: dict[str, str], client: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"{cors_gateways['shop']}/customer-segment/{tenant}/segments/{segment_id}"
    other = {"Origin": "https://evil.example"}
    async with client.options(url, headers={**other, **PREFLIGHT}) as response:
        assert response.status == 405 and _cors_headers(response) == {}
        assert "origin" in _list(response.headers.get("Vary"))
    async with client.get(url, headers=other) as response:
        assert response.status == 200 and _cors_headers(response) == {}


async def test_cors_is_off_by_default(
    http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    url = f"/customer-segment/{tenant}/segments/{segment_id}"
    async with http.options(url, headers={"Origin": SHOP, **PREFLIGHT}) as response:
        assert response.status == 405 and _cors_headers(response) == {}
    async with http.get(url, headers={"Origin": SHOP}) as response:
        assert response.status == 200 and _cors_headers(response) == {}
        assert "Vary" not in response.headers


@pytest.mark.parametrize("origin", [SHOP, "http://localhost:3000"])
async def test_a_star_allows_every_origin(
    cors_gateways: dict[str, str], client: aiohttp.ClientSession, origin: str, tenant: str
) -> None:
    url = f"{cors_gateways['*']}/customer-segment/{tenant}/segments"
    async with client.options(url, headers={"Origin": origin, **PREFLIGHT}) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == origin
    async with client.get(url, headers={"Origin": origin}) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
