"""The token verifier that the settings ask for, and the development secret."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from customer_segments.auth.jwks import JwksKeys
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.config import Settings

SECRET_FILE_NAME = "jwt-secret"


def shared_secret(settings: Settings) -> bytes | None:
    """The HS256 secret: the configured one; else, when no JWKS is configured either, the
    development secret kept in the data directory (made on first use, readable by the owner
    only), so that `make run` and `customer-segments token` agree with nothing configured."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.encode()
    if settings.jwks is not None:
        return None  # production: keys come from the JWKS only
    return _development_secret(settings.data_dir / SECRET_FILE_NAME)


def _development_secret(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: when several workers start at once, one link
        # wins and every worker reads the same complete secret.
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as file:
            file.write(secrets.token_urlsafe(32) + "\n")  # mode 0600, as mkstemp makes it
        try:
            os.link(file.name, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(file.name)
    secret = path.read_text("ascii").strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable secret; delete it to make a new one")
    return secret.encode()


def token_verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(
        secret=shared_secret(settings),
        jwks=JwksKeys(settings.jwks) if settings.jwks else None,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
