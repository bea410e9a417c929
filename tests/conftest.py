"""Shared fixtures: real databases (SQLite file and PostgreSQL), a real gRPC server on loopback.

Every store test runs on both databases. The PostgreSQL half needs the server at
CUSTOMER_SEGMENTS_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test); without it the
half is skipped with the reason, except under CI=true where it must run. Each test run creates
its own PostgreSQL database and drops it at the end, so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import aiohttp
import asyncpg
import grpc
import pytest
import pytest_asyncio
from customersegment.v1 import (
    assignment_pb2_grpc,
    directory_pb2_grpc,
    events_pb2_grpc,
    segment_pb2,
    segment_pb2_grpc,
    webhooks_pb2_grpc,
)

from customer_segments.auth.tokens import TokenVerifier
from customer_segments.gateway.app import Gateway, start_gateway_on
from customer_segments.grpc.server import GrpcServer, start_grpc_server
from customer_segments.store.database import Database
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store
from tests.helpers import TEST_SECRET, admin_token_middleware, admin_tokens
from tests.own_postgres import OwnPostgres, server_binaries

PG_ADMIN_URL = os.environ.get(
    "CUSTOMER_SEGMENTS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


def _pg_unavailable_reason() -> str | None:
    async def probe() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as error:
        return (
            f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({error.__class__.__name__}: {error})"
        )
    return None


_PG_REASON = _pg_unavailable_reason()


def _run_in_thread(coroutine: Coroutine[Any, Any, None]) -> None:
    """Runs a coroutine to completion from sync code, even while the test loop is running."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


def skip_unless_ci(reason: str) -> NoReturn:
    """Skips the calling test for `reason` (something the machine lacks); under CI=true, where
    everything must be there, fails it."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require_postgres() -> None:
    """Skips the calling test when PostgreSQL is unreachable, except under CI=true."""
    if _PG_REASON is not None:
        skip_unless_ci(_PG_REASON)


@contextmanager
def fresh_postgres_database(prefix: str, options: str = "") -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped afterwards; `options` go to
    CREATE DATABASE (e.g. a locale)."""
    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    _run_in_thread(admin(f'CREATE DATABASE "{name}" {options}'))
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        _run_in_thread(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL of this module's own, which it may restart."""
    binaries = server_binaries()
    if binaries is None:
        skip_unless_ci("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    server = OwnPostgres(binaries)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """This test run's own database."""
    with fresh_postgres_database("cs_test") as url:
        yield url


def database_url(backend: str, request: pytest.FixtureRequest, tmp_path_factory: Any) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    path: Path = tmp_path_factory.mktemp("sqlite") / "customer-segments.db"
    return f"sqlite:///{path}"


@pytest_asyncio.fixture(scope="session", params=BACKENDS, loop_scope="session")
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Store]:
    database = Database(database_url(request.param, request, tmp_path_factory))
    await upgrade_to_head(database)
    store = Store(database)
    yield store
    await store.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def grpc_server(store: Store) -> AsyncIterator[GrpcServer]:
    verifier = TokenVerifier(secret=TEST_SECRET.encode())
    server = await start_grpc_server(store, "127.0.0.1", 0, verifier=verifier)
    yield server
    await server.stop(0)


class Service(NamedTuple):
    store: Store
    stubs: Stubs
    port: int  # of its gRPC server


@asynccontextmanager
async def service_on(database: Database) -> AsyncIterator[Service]:
    """A migrated store on `database` and a gRPC server of its own, for tests that need a
    database other than the session's (another locale, a server that goes away)."""
    await upgrade_to_head(database)
    store = Store(database)
    server = await start_grpc_server(
        store, "127.0.0.1", 0, verifier=TokenVerifier(secret=TEST_SECRET.encode())
    )
    try:
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(target, interceptors=admin_tokens()) as channel:
            yield Service(store, Stubs(channel), server.port)
    finally:
        await server.stop(0)
        await store.close()


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.assignments = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
        self.segments = segment_pb2_grpc.SegmentServiceStub(channel)
        self.directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(channel)
        self.events = events_pb2_grpc.EventServiceStub(channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stubs(grpc_server: GrpcServer) -> AsyncIterator[Stubs]:
    """Stubs whose calls carry an all-scopes token for the tenant they name, unless the call
    brings its own `authorization` metadata."""
    target = f"127.0.0.1:{grpc_server.port}"
    async with grpc.aio.insecure_channel(target, interceptors=admin_tokens()) as channel:
        yield Stubs(channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bare_stubs(grpc_server: GrpcServer) -> AsyncIterator[Stubs]:
    """Stubs that send only the metadata a test gives them."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield Stubs(channel)


@pytest.fixture
def tenant() -> str:
    """A tenant of its own for each test: tests never see each other's rows."""
    return "t" + secrets.token_hex(7)


@pytest_asyncio.fixture(loop_scope="session")
async def segment_id(stubs: Stubs, tenant: str) -> str:
    """An ACTIVE segment in the test's tenant."""
    created = (
        await stubs.segments.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                tenant=tenant,
                segment=segment_pb2.Segment(
                    id="gold",
                    name={"en": "Gold"},
                    site_code="main",
                    status=segment_pb2.SEGMENT_STATUS_ACTIVE,
                ),
            )
        )
    ).segment
    return created.id


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway(grpc_server: GrpcServer) -> AsyncIterator[Gateway]:
    """The REST gateway on loopback, calling the real gRPC server's methods in process, as in
    `serve` (tests/integration/test_gateway_in_process.py pins it to a real channel's)."""
    started = await start_gateway_on(grpc_server.channel.as_channel(), "127.0.0.1", 0)
    yield started
    await started.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose requests carry an all-scopes token for the path's tenant, unless they
    bring their own Authorization header."""
    base = f"http://127.0.0.1:{gateway.port}"
    async with aiohttp.ClientSession(base, middlewares=[admin_token_middleware]) as session:
        yield session


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bare_http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that sends only the headers a test gives it."""
    async with aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as session:
        yield session
