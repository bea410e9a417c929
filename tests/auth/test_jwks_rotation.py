"""Key rotation on a running server: a JWKS served over HTTP changes, the server follows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest_asyncio
from aiohttp import web
from customersegment.v1 import segment_pb2

from customer_segments.auth.jwks import JwksKeys
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.grpc.server import GrpcServer, start_grpc_server
from customer_segments.store.store import Store
from tests.auth.keys import SigningKey, claims
from tests.conftest import Stubs
from tests.helpers import expect_error


class KeyServer:
    """An identity provider's JWKS endpoint whose keys a test can change."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.requests = 0
        self.url = ""

    async def jwks(self, _: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response({"keys": [key.jwk for key in self.keys]})


@pytest_asyncio.fixture(loop_scope="session")
async def key_server() -> AsyncIterator[KeyServer]:
    server = KeyServer()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", server.jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    yield server
    await runner.cleanup()


@asynccontextmanager
async def _trusting(store: Store, keys: JwksKeys) -> AsyncIterator[Stubs]:
    """A server that trusts only the key server's keys (no shared secret)."""
    server: GrpcServer = await start_grpc_server(
        store, "127.0.0.1", 0, verifier=TokenVerifier(jwks=keys)
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Stubs(channel)
    await server.stop(0)


@pytest_asyncio.fixture(loop_scope="session")
async def jwks_stubs(store: Store, key_server: KeyServer) -> AsyncIterator[Stubs]:
    """Keys that age within the test, so that it sees a rotation."""
    keys = JwksKeys(key_server.url, max_age_seconds=0.5, min_reload_seconds=0.2)
    async with _trusting(store, keys) as stubs:
        yield stubs


@pytest_asyncio.fixture(loop_scope="session")
async def steady_jwks_stubs(store: Store, key_server: KeyServer) -> AsyncIterator[Stubs]:
    """Keys that neither age nor may reload again within any test, however slow the machine:
    whatever asks the key server more than once is a flood getting through."""
    keys = JwksKeys(key_server.url, max_age_seconds=600, min_reload_seconds=600)
    async with _trusting(store, keys) as stubs:
        yield stubs


def _metadata(key: SigningKey, tenant: str, **extra: Any) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key.sign(claims(tenant, **extra))}")]


async def _list(stubs: Stubs, tenant: str, metadata: list[tuple[str, str]]) -> Any:
    return await stubs.segments.ListSegments(
        segment_pb2.ListSegmentsRequest(tenant=tenant), metadata=metadata
    )


async def test_a_new_key_is_trusted_once_published_and_an_old_one_dropped_once_withdrawn(
    jwks_stubs: Stubs, key_server: KeyServer, tenant: str
) -> None:
    old, new = SigningKey("2026-10", "RS256"), SigningKey("2026-11", "ES256")
    key_server.keys = [old]
    await _list(jwks_stubs, tenant, _metadata(old, tenant))
    # Signed by a key the identity provider has not published yet.
    await expect_error(
        _list(jwks_stubs, tenant, _metadata(new, tenant)), grpc.StatusCode.UNAUTHENTICATED
    )
    key_server.keys = [old, new]
    await asyncio.sleep(0.3)  # the reload interval after the failed lookup
    await _list(jwks_stubs, tenant, _metadata(new, tenant))
    key_server.keys = [new]
    await asyncio.sleep(0.6)  # the keys' maximum age
    # A token not seen before (the verifier remembers verified tokens for a while).
    await expect_error(
        _list(jwks_stubs, tenant, _metadata(old, tenant, sub="fresh")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await _list(jwks_stubs, tenant, _metadata(new, tenant, sub="fresh"))


async def test_made_up_kids_do_not_hammer_the_key_server(
    steady_jwks_stubs: Stubs, key_server: KeyServer, tenant: str
) -> None:
    """Right after a load, with reloads at most once per 600 s, a flood of made-up kids must
    not reach the key server at all (with the 0.2 s of jwks_stubs, 50 calls on a loaded
    machine could span several periods, each rightly allowed one reload)."""
    key = SigningKey("k", "RS256")
    key_server.keys = [key]
    await _list(steady_jwks_stubs, tenant, _metadata(key, tenant))
    before = key_server.requests
    forged = [
        [("authorization", f"Bearer {key.sign(claims(tenant), kid=f'made-up-{n}')}")]
        for n in range(50)
    ]
    results = await asyncio.gather(
        *(_list(steady_jwks_stubs, tenant, metadata) for metadata in forged),
        return_exceptions=True,
    )
    assert all(
        isinstance(result, grpc.aio.AioRpcError)
        and result.code() == grpc.StatusCode.UNAUTHENTICATED
        for result in results
    )
    assert key_server.requests == before, json.dumps(key_server.requests)
