"""gRPC over TLS and mutual TLS on loopback, with certificates made here: the public port of
the server, the standalone gateway's channel towards it, and the settings checked at start."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import aiohttp
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from customer_segments.auth.tokens import TokenVerifier
from customer_segments.client import CustomerSegmentsClient, TlsConfig, Unavailable
from customer_segments.config import Settings
from customer_segments.gateway.app import start_gateway
from customer_segments.grpc.server import GrpcServer, start_grpc_server
from customer_segments.startup import StartupError
from customer_segments.store.database import Database
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store
from customer_segments.tls import channel_tls, server_tls
from tests.certificates import LOOPBACK_NAMES, issue
from tests.e2e.test_service_process import CLI, GRPCURL, start
from tests.helpers import TEST_SECRET, bearer, token

TENANT = "acme"


class Files(NamedTuple):
    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # Signed by another CA: what a caller the service does not know presents.
    stranger_cert: Path
    stranger_key: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("tls")
    ca = issue("test CA", None)
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.certificate_pem)
    server = issue("customer-segments", ca, LOOPBACK_NAMES).write(folder, "server")
    client = issue("internal-caller", ca).write(folder, "client")
    stranger = issue("stranger", issue("other CA", None)).write(folder, "stranger")
    return Files(folder, ca_file, *server, *client, *stranger)


@pytest_asyncio.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    path = tmp_path_factory.mktemp("tls-db") / "customer-segments.db"
    database = Database(f"sqlite:///{path}")
    await upgrade_to_head(database)
    store = Store(database)
    yield store
    await store.close()


async def _server(store: Store, settings: Settings) -> GrpcServer:
    verifier = TokenVerifier(secret=TEST_SECRET.encode())
    return await start_grpc_server(
        store, "127.0.0.1", 0, verifier=verifier, tls=server_tls(settings)
    )


@pytest_asyncio.fixture(scope="module")
async def tls_server(store: Store, files: Files) -> AsyncIterator[GrpcServer]:
    server = await _server(store, Settings(tls_cert=files.server_cert, tls_key=files.server_key))
    yield server
    await server.stop(0)


@pytest_asyncio.fixture(scope="module")
async def mtls_server(store: Store, files: Files) -> AsyncIterator[GrpcServer]:
    settings = Settings(
        tls_cert=files.server_cert, tls_key=files.server_key, tls_client_ca=files.ca
    )
    server = await _server(store, settings)
    yield server
    await server.stop(0)


async def _list_segments(server: GrpcServer, tls: TlsConfig | None) -> int:
    async with CustomerSegmentsClient(
        f"127.0.0.1:{server.port}", token=token(TENANT), tls=tls, retry=None
    ) as client:
        return len((await client.list_segments(TENANT, timeout=30)).segments)


async def test_tls_serves_a_client_that_trusts_the_ca(tls_server: GrpcServer, files: Files) -> None:
    assert await _list_segments(tls_server, TlsConfig(ca_certificate=files.ca)) == 0


async def test_tls_refuses_plaintext_and_an_unknown_ca(
    tls_server: GrpcServer, files: Files
) -> None:
    with pytest.raises(Unavailable):
        await _list_segments(tls_server, None)
    stranger_ca = TlsConfig(ca_certificate=files.stranger_cert)  # self-signed by nobody known
    with pytest.raises(Unavailable):
        await _list_segments(tls_server, stranger_ca)


async def test_mtls_refuses_a_client_without_a_certificate(
    mtls_server: GrpcServer, files: Files
) -> None:
    with pytest.raises(Unavailable):
        await _list_segments(mtls_server, TlsConfig(ca_certificate=files.ca))
    other_ca = TlsConfig(
        ca_certificate=files.ca,
        client_certificate=files.stranger_cert,
        client_key=files.stranger_key,
    )
    with pytest.raises(Unavailable):
        await _list_segments(mtls_server, other_ca)


async def test_mtls_serves_a_client_with_a_certificate_of_its_ca(
    mtls_server: GrpcServer, files: Files
) -> None:
    tls = TlsConfig(
        ca_certificate=files.ca, client_certificate=files.client_cert, client_key=files.client_key
    )
    assert await _list_segments(mtls_server, tls) == 0


async def _gateway_answers(server: GrpcServer, settings: Settings) -> tuple[int, int]:
    """The standalone gateway with these --grpc-* settings: /readyz's status, and a REST
    call's."""
    gateway = await start_gateway(
        f"localhost:{server.port}", "127.0.0.1", 0, tls=channel_tls(settings)
    )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as http:
            async with http.get("/readyz") as ready:
                readiness = ready.status
            headers = {"Authorization": bearer(TENANT)}
            async with http.get(f"/customer-segment/{TENANT}/segments", headers=headers) as call:
                return readiness, call.status
    finally:
        await gateway.stop()


async def test_the_standalone_gateway_reaches_tls_and_mtls_servers(
    tls_server: GrpcServer, mtls_server: GrpcServer, files: Files
) -> None:
    assert await _gateway_answers(tls_server, Settings(grpc_ca=files.ca)) == (200, 200)
    mutual = Settings(
        grpc_ca=files.ca, grpc_client_cert=files.client_cert, grpc_client_key=files.client_key
    )
    assert await _gateway_answers(mtls_server, mutual) == (200, 200)


async def test_the_gateway_without_its_certificate_is_not_ready(
    mtls_server: GrpcServer, files: Files
) -> None:
    readiness, call = await _gateway_answers(mtls_server, Settings(grpc_ca=files.ca))
    assert (readiness, call) == (503, 503)


# Settings checked at start ------------------------------------------------------------------


def _refusal(settings: Settings) -> str:
    with pytest.raises(StartupError) as refused:
        server_tls(settings)
        channel_tls(settings)
    return str(refused.value)


def test_a_certificate_without_its_key_is_refused(files: Files) -> None:
    assert "--tls-cert needs --tls-key" in _refusal(Settings(tls_cert=files.server_cert))
    assert "--tls-key needs --tls-cert" in _refusal(Settings(tls_key=files.server_key))
    assert "--tls-client-ca needs --tls-cert" in _refusal(Settings(tls_client_ca=files.ca))
    message = _refusal(Settings(grpc_client_cert=files.client_cert))
    assert "--grpc-client-cert needs --grpc-client-key" in message


def test_unreadable_and_non_pem_files_are_named(files: Files) -> None:
    missing = files.folder / "missing.pem"
    message = _refusal(Settings(tls_cert=missing, tls_key=files.server_key))
    assert message.startswith(f"--tls-cert {missing} cannot be read (No such file")
    message = _refusal(Settings(tls_cert=files.server_key, tls_key=files.server_key))
    assert message == f"--tls-cert {files.server_key} holds no PEM certificate " + (
        "(-----BEGIN CERTIFICATE-----)"
    )
    message = _refusal(Settings(tls_cert=files.server_cert, tls_key=files.server_cert))
    assert message.startswith(f"--tls-key {files.server_cert} holds no PEM private key")
    message = _refusal(Settings(grpc_ca=files.client_key))
    assert message.startswith(f"--grpc-ca {files.client_key} holds no PEM certificate")


def test_a_key_of_another_certificate_is_refused(files: Files) -> None:
    message = _refusal(Settings(tls_cert=files.server_cert, tls_key=files.client_key))
    assert message.startswith(f"--tls-key {files.client_key} is not the key of the certificate")


def test_an_encrypted_key_is_refused(files: Files) -> None:
    pem = issue("locked", None)
    locked = files.folder / "locked-key.pem"
    locked.write_bytes(
        pem.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    certificate = files.folder / "locked.pem"
    certificate.write_bytes(pem.certificate_pem)
    message = _refusal(Settings(tls_cert=certificate, tls_key=locked))
    assert "is encrypted with a password" in message


@pytest.mark.parametrize(
    "arguments",
    [
        ["serve", "--tls-cert", "{server_cert}"],
        ["gateway", "--grpc-ca", "{server_key}"],
    ],
)
def test_the_command_says_it_in_one_line(files: Files, arguments: list[str]) -> None:
    paths = {name: str(path) for name, path in files._asdict().items()}
    done = subprocess.run(
        [CLI, *(argument.format(**paths) for argument in arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=files.folder,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("customer-segments: --"), done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_mtls_keeps_its_gateway_on_plaintext(files: Files, tmp_path: Path) -> None:
    """The command as an operator runs it: grpcurl needs the CA and a client certificate on the
    public port, while the REST gateway still reaches its server over the local socket."""
    service = start(
        tmp_path,
        "--tls-cert",
        str(files.server_cert),
        "--tls-key",
        str(files.server_key),
        "--tls-client-ca",
        str(files.ca),
    )
    try:
        health = ["grpc.health.v1.Health/Check"]
        with_certificate = ["-cacert", str(files.ca), "-cert", str(files.client_cert)]
        with_certificate += ["-key", str(files.client_key)]
        served = _grpcurl(*with_certificate, service.target, *health, connect_timeout=30)
        assert served.returncode == 0 and '"SERVING"' in served.stdout, served.stderr
        refused = _grpcurl("-cacert", str(files.ca), service.target, *health)
        assert refused.returncode != 0, refused.stdout
        plaintext = _grpcurl("-plaintext", service.target, *health)
        assert plaintext.returncode != 0, plaintext.stdout
        headers = {"Authorization": f"Bearer {service.admin_token}"}
        for path in ("/readyz", "/customer-segment/acme/segments"):
            request = urllib.request.Request(service.http + path, headers=headers)
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200, path
    finally:
        service.process.terminate()
        service.process.wait(timeout=30)


def _grpcurl(*arguments: str, connect_timeout: int = 3) -> subprocess.CompletedProcess[str]:
    """A refused handshake is retried until the connect timeout: a refusal need not wait long."""
    return subprocess.run(
        [GRPCURL, "-connect-timeout", str(connect_timeout), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )
