"""The PEM files of the gRPC TLS settings, read and checked at start: a missing half of a
pair, an unreadable file or one that is not PEM is a StartupError naming the flag, rather than
a handshake that fails later for every caller."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from customer_segments.client.client import TlsConfig
from customer_segments.config import Settings
from customer_segments.startup import StartupError


@dataclass(frozen=True)
class ServerTls:
    """The public gRPC port's certificate chain and key; with `client_ca`, callers must
    present a certificate it signed (mTLS). PEM bytes, checked."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def server_tls(settings: Settings) -> ServerTls | None:
    """From --tls-cert, --tls-key, --tls-client-ca; None: plaintext."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if cert is None and key is None:
        if client_ca is not None:
            raise StartupError("--tls-client-ca needs --tls-cert and --tls-key: mTLS is TLS first")
        return None
    chain, private_key = _pair(cert, "--tls-cert", key, "--tls-key")
    return ServerTls(chain, private_key, _certificates(client_ca, "--tls-client-ca"))


def channel_tls(settings: Settings) -> TlsConfig | None:
    """From --grpc-ca, --grpc-client-cert, --grpc-client-key (`gateway`); None: plaintext.
    Without --grpc-ca the system's roots check the server."""
    ca, cert, key = settings.grpc_ca, settings.grpc_client_cert, settings.grpc_client_key
    if ca is None and cert is None and key is None:
        return None
    chain, private_key = (
        (None, None)
        if cert is None and key is None
        else _pair(cert, "--grpc-client-cert", key, "--grpc-client-key")
    )
    return TlsConfig(
        ca_certificate=_certificates(ca, "--grpc-ca"),
        client_certificate=chain,
        client_key=private_key,
    )


def _pair(
    cert: Path | None, cert_flag: str, key: Path | None, key_flag: str
) -> tuple[bytes, bytes]:
    """A certificate chain and its key, both given, the key that of the first certificate."""
    if cert is None or key is None:
        missing, given = (cert_flag, key_flag) if cert is None else (key_flag, cert_flag)
        raise StartupError(f"{given} needs {missing} too: a certificate and its key go together")
    chain = _certificates(cert, cert_flag)
    assert chain is not None
    private_key, loaded = _private_key(key, key_flag)
    leaf = x509.load_pem_x509_certificates(chain)[0]
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(der, spki) != loaded.public_key().public_bytes(der, spki):
        raise StartupError(
            f"{key_flag} {key} is not the key of the certificate in {cert_flag} {cert} "
            "(the first one in the file must be the server's own)"
        )
    return chain, private_key


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StartupError(
            f"{flag} {path} cannot be read ({error.strerror or error}): check the path and "
            "its permissions"
        ) from None


def _certificates(path: Path | None, flag: str) -> bytes | None:
    """The file's bytes, once it is known to hold PEM certificates."""
    if path is None:
        return None
    data = _read(path, flag)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise StartupError(
            f"{flag} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ) from None
    return data


def _private_key(path: Path, flag: str) -> tuple[bytes, PrivateKeyTypes]:
    data = _read(path, flag)
    try:
        return data, serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise StartupError(
            f"{flag} {path} is encrypted with a password: give the key unencrypted "
            "(gRPC cannot ask for a password)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise StartupError(
            f"{flag} {path} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
        ) from None
