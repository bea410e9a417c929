"""Bearer token verification and development tokens.

Which key verifies a token is decided by configuration, never by the token alone: HS256 only
with the configured shared secret, RS256/ES256 only with a key of that type from the JWKS.
`alg: none` and every other algorithm are refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import jwt

from customer_segments.auth.jwks import KEY_TYPE_OF_ALGORITHM, JwksKeys
from customer_segments.domain.errors import Reason, Unauthenticated
from customer_segments.domain.principal import Principal

REQUIRED_CLAIMS = ["exp", "tenant"]
# RFC 7519 NumericDates: JSON numbers (PyJWT would take "123" and true), here between
# 1970-01-01 and 9999-12-31T23:59:59Z, the instants a datetime can hold.
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
LAST_NUMERIC_DATE = 253_402_300_799
# A verified token is remembered this long at most (and never past its `exp`): internal callers
# reuse one token for many calls, and a signature check costs more than the call it guards.
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 10_000


class TokenVerifier:
    def __init__(
        self,
        *,
        secret: bytes | None = None,
        jwks: JwksKeys | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: float = 10.0,
    ) -> None:
        if secret is None and jwks is None:
            raise ValueError("a token verifier needs a shared secret, a JWKS, or both")
        self.secret = secret
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <JWT>` value; Unauthenticated otherwise."""
        token = _bearer_token(authorization)
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        claims = await self._decode(token)
        principal = principal_of(claims)
        if len(self._verified) >= CACHE_ENTRIES:
            self._verified.clear()
        # min() compares the int exp exactly; float() of a huge int would overflow.
        self._verified[token] = (principal, min(claims["exp"], time.time() + CACHE_SECONDS))
        return principal

    async def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if not isinstance(algorithm, str):
                raise Unauthenticated("the header's 'alg' is not a string")
            key: Any
            if algorithm == "HS256" and self.secret is not None:
                key = self.secret
            elif algorithm in KEY_TYPE_OF_ALGORITHM and self.jwks is not None:
                kid = header.get("kid")
                key = await self.jwks.key(kid if isinstance(kid, str) else None, algorithm)
                if key is None:
                    raise Unauthenticated(f"no {algorithm} key with kid {kid!r} in the JWKS")
            else:
                raise Unauthenticated(f"tokens signed with {algorithm!r} are not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"{error.__class__.__name__}: {error}") from None
        for name in NUMERIC_DATE_CLAIMS:
            if name in claims:
                _numeric_date(claims[name], name)
        return claims


def _numeric_date(value: Any, name: str) -> None:
    # bool is an int in Python, not a number in JSON; the chained comparison also refuses NaN.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= LAST_NUMERIC_DATE
    ):
        raise Unauthenticated(
            f"claim {name!r} is not a number of seconds between 0 and {LAST_NUMERIC_DATE}"
        )


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("no Authorization", Reason.TOKEN_MISSING)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization is not 'Bearer <token>'")
    # A JWT is base64url and dots; aiohttp hands undecodable header bytes on as surrogates,
    # which PyJWT's encode("utf-8") would raise on.
    if not token.isascii():
        raise Unauthenticated("the token is not ASCII")
    return token.strip()


def _optional_text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"claim {name!r} is not a non-empty string")
    return value


def principal_of(claims: dict[str, Any]) -> Principal:
    tenant = _optional_text(claims, "tenant")
    if tenant is None:
        raise Unauthenticated("no claim 'tenant'")
    scope = claims.get("scope", "")
    if isinstance(scope, str):
        scopes: Iterable[Any] = scope.split()
    elif isinstance(scope, list):
        scopes = scope
    else:
        raise Unauthenticated("claim 'scope' is neither a string nor a list")
    if not all(isinstance(entry, str) for entry in scopes):
        raise Unauthenticated("claim 'scope' holds a non-string")
    return Principal(
        tenant=tenant,
        scopes=frozenset(scopes),
        subject=_optional_text(claims, "sub"),
        legal_entity_id=_optional_text(claims, "legalEntityId"),
    )


def issue_token(
    secret: bytes,
    *,
    tenant: str,
    scopes: Iterable[str],
    subject: str | None = None,
    legal_entity_id: str | None = None,
    ttl_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for development and tests, with the claims this service reads."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "tenant": tenant,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    optional = {"sub": subject, "legalEntityId": legal_entity_id, "iss": issuer, "aud": audience}
    claims.update({name: value for name, value in optional.items() if value})
    return jwt.encode(claims, secret, algorithm="HS256")
