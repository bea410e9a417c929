"""Signing keys and hand-made tokens for the authorization tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.helpers import ALL_SCOPES, TEST_SECRET


class SigningKey:
    """A private key with its kid; `jwk` is the public half as a JWKS entry."""

    def __init__(self, kid: str, algorithm: str) -> None:
        self.kid = kid
        self.algorithm = algorithm
        if algorithm == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            algorithm_object: Any = jwt.algorithms.RSAAlgorithm
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            algorithm_object = jwt.algorithms.ECAlgorithm
        self.jwk: dict[str, Any] = json.loads(algorithm_object.to_jwk(self.private.public_key()))
        self.jwk.update(kid=kid, use="sig")

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid, **header}
        )


def claims(tenant: str, *scopes: str, ttl: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "tenant": tenant,
        "scope": " ".join(scopes or ALL_SCOPES),
        "iat": now,
        "exp": now + ttl,
        **extra,
    }


def hs256(claims: Any, secret: str | bytes = TEST_SECRET, header: Any = None) -> str:
    """Signed by hand: PyJWT (rightly) refuses to sign with a public key as the secret, which
    is exactly the forgery the algorithm-confusion test needs, or a malformed header."""
    key = secret.encode() if isinstance(secret, str) else secret
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(part: Any) -> str:
    return _b64(json.dumps(part).encode())


def unsigned(claims: dict[str, Any]) -> str:
    """`alg: none`: a token anyone can make."""
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."


def write_jwks(path: Path, *keys: SigningKey) -> None:
    path.write_text(json.dumps({"keys": [key.jwk for key in keys]}))
