"""The verifier on hostile tokens: it returns a principal or raises Unauthenticated, nothing
else (a TypeError or OverflowError would reach the caller as 500 / INTERNAL)."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from customer_segments.auth.jwks import JwksKeys
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.domain.errors import Unauthenticated
from customer_segments.domain.principal import Principal
from tests.auth.keys import SigningKey, claims, hs256, write_jwks
from tests.helpers import TEST_SECRET

RSA = SigningKey("rsa-1", "RS256")


def signed(header: Any, payload: Any) -> str:
    """HS256 with the suite's secret (a valid signature) over any JSON header and payload."""
    return hs256(payload, header=header)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> TokenVerifier:
    path: Path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    write_jwks(path, RSA)
    return TokenVerifier(secret=TEST_SECRET.encode(), jwks=JwksKeys(str(path)))


def outcome(verifier: TokenVerifier, authorization: str) -> Principal | None:
    """The principal, or None for Unauthenticated; anything else fails the test."""
    try:
        return asyncio.run(verifier.verify(authorization))
    except Unauthenticated:
        return None


NOW = int(time.time())


@pytest.mark.parametrize(
    ("case", "header", "payload"),
    [
        ("alg a list", {"alg": ["HS256"]}, claims("acme")),
        ("alg an object", {"alg": {"HS256": 1}}, claims("acme")),
        ("exp 10**400", {"alg": "HS256"}, {**claims("acme"), "exp": 10**400}),
        ("exp a string of digits", {"alg": "HS256"}, {**claims("acme"), "exp": str(NOW + 600)}),
        ("exp true", {"alg": "HS256"}, {**claims("acme"), "exp": True}),
        ("exp 1e400", {"alg": "HS256"}, {**claims("acme"), "exp": float("inf")}),
        ("nbf a string", {"alg": "HS256"}, {**claims("acme"), "nbf": str(NOW)}),
        ("nbf false", {"alg": "HS256"}, {**claims("acme"), "nbf": False}),
        ("iat a string", {"alg": "HS256"}, {**claims("acme"), "iat": str(NOW)}),
        ("iat true", {"alg": "HS256"}, {**claims("acme"), "iat": True}),
        ("nbf -10**400", {"alg": "HS256"}, {**claims("acme"), "nbf": -(10**400)}),
        ("kid a list", {"alg": "RS256", "kid": ["rsa-1"]}, claims("acme")),
        ("payload a list", {"alg": "HS256"}, [claims("acme")]),
    ],
)
def test_refuses_malformed_claims_and_headers(
    verifier: TokenVerifier, case: str, header: Any, payload: Any
) -> None:
    assert outcome(verifier, f"Bearer {signed(header, payload)}") is None, case


def test_numeric_dates_may_be_fractional(verifier: TokenVerifier) -> None:
    # The time of the test, not of collection: the suite may run longer than the token lives.
    now = int(time.time())
    payload = {**claims("acme"), "exp": now + 600.5, "nbf": now - 0.5, "iat": now - 0.25}
    assert outcome(verifier, f"Bearer {signed({'alg': 'HS256'}, payload)}") is not None


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
# Each part is often the valid value, so that many tokens get past the signature and the
# earlier checks and the later ones are reached too.
NUMERIC_DATE = (
    st.just(NOW)
    | JSON
    | st.integers(min_value=NOW - 100, max_value=NOW + 100)
    | st.floats()
    | st.integers(min_value=-(10**400), max_value=10**400)
)
HEADER = st.fixed_dictionaries(
    {"alg": st.just("HS256") | st.sampled_from(["RS256", "ES256", "none", "HS512"]) | JSON},
    optional={"kid": JSON | st.just("rsa-1"), "typ": JSON, "crit": JSON, "b64": JSON},
)
PAYLOAD = (
    st.fixed_dictionaries(
        {
            "tenant": st.just("acme") | JSON,
            "exp": st.just(NOW + 600) | st.just(NOW + 600.5) | NUMERIC_DATE,
        },
        optional={
            "nbf": NUMERIC_DATE,
            "iat": NUMERIC_DATE,
            "scope": st.just("a b") | JSON | st.lists(st.text(max_size=5), max_size=3),
            "sub": st.just("c1") | JSON,
            "legalEntityId": st.just("le1") | JSON,
            "aud": JSON,
            "iss": JSON,
        },
    )
    | JSON
)

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(header=HEADER, payload=PAYLOAD)
def test_signed_tokens_of_any_shape(verifier: TokenVerifier, header: Any, payload: Any) -> None:
    principal = outcome(verifier, f"Bearer {signed(header, payload)}")
    event("accepted" if principal is not None else "refused")
    if principal is not None:
        assert isinstance(payload, dict)
        assert isinstance(payload["exp"], int | float) and not isinstance(payload["exp"], bool)
        assert principal.tenant == payload["tenant"]


@FUZZ
@given(
    token=st.text(st.characters(exclude_categories=()), max_size=200)
    | st.lists(st.text(max_size=300), min_size=1, max_size=4).map(".".join)
    | st.binary(max_size=300).map(lambda raw: _b64(raw) + "." + _b64(raw) + "." + _b64(raw))
)
def test_any_text_as_a_token(verifier: TokenVerifier, token: str) -> None:
    assert outcome(verifier, f"Bearer {token}") is None


def test_undecodable_header_bytes(verifier: TokenVerifier) -> None:
    # aiohttp passes bytes that are not UTF-8 on as lone surrogates.
    good = signed({"alg": "HS256"}, claims("acme"))
    assert outcome(verifier, f"Bearer \udc80{good}") is None
    assert outcome(verifier, "Bearer \udc80.a.b") is None


def test_a_huge_token(verifier: TokenVerifier) -> None:
    payload = {**claims("acme"), "pad": "x" * 1_000_000}
    assert outcome(verifier, f"Bearer {signed({'alg': 'HS256'}, payload)}") is not None
    assert outcome(verifier, "Bearer " + "a" * 1_000_000) is None
    assert outcome(verifier, "Bearer " + "a." * 500_000) is None
