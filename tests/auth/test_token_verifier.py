"""TokenVerifier on its own: which tokens it accepts and what it reads from them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest

from customer_segments.auth.jwks import JwksKeys
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.domain.errors import Unauthenticated
from customer_segments.domain.principal import Principal, Scope
from tests.auth.keys import SigningKey, claims, hs256, unsigned, write_jwks
from tests.helpers import TEST_SECRET

RSA = SigningKey("rsa-1", "RS256")
EC = SigningKey("ec-1", "ES256")


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, RSA, EC)
    return path


@pytest.fixture
def verifier(jwks_file: Path) -> TokenVerifier:
    return TokenVerifier(secret=TEST_SECRET.encode(), jwks=JwksKeys(str(jwks_file)))


async def test_reads_tenant_scopes_customer_and_legal_entity(verifier: TokenVerifier) -> None:
    token = hs256(claims("acme", Scope.READ_OWN.value, sub="c1", legalEntityId="le1"))
    principal = await verifier.verify(f"Bearer {token}")
    assert principal == Principal("acme", frozenset({Scope.READ_OWN.value}), "c1", "le1")
    assert principal.sees_only_own


@pytest.mark.parametrize("key", [RSA, EC], ids=["RS256", "ES256"])
async def test_accepts_rs256_and_es256_from_the_jwks(
    verifier: TokenVerifier, key: SigningKey
) -> None:
    principal = await verifier.verify(f"Bearer {key.sign(claims('acme'))}")
    assert principal.tenant == "acme" and principal.has(Scope.MANAGE)


def _refused_tokens() -> list[tuple[str, str | None]]:
    other = SigningKey("rsa-1", "RS256")  # the same kid, another key
    now = int(time.time())
    return [
        ("no header", None),
        ("empty", ""),
        ("not bearer", f"Basic {hs256(claims('acme'))}"),
        ("bearer without token", "Bearer "),
        ("garbage", "Bearer not.a.jwt"),
        (
            "another secret",
            f"Bearer {hs256(claims('acme'), 'another-secret-0123456789abcdefghij')}",
        ),
        ("alg none", f"Bearer {unsigned(claims('acme'))}"),
        ("expired", f"Bearer {hs256(claims('acme', ttl=-60))}"),
        ("not yet valid", f"Bearer {hs256(claims('acme', nbf=now + 3600))}"),
        ("no tenant", f"Bearer {hs256({'exp': now + 60, 'scope': 'x'})}"),
        ("empty tenant", f"Bearer {hs256(claims(''))}"),
        ("no exp", f"Bearer {hs256({'tenant': 'acme'})}"),
        ("scope of numbers", f"Bearer {hs256({**claims('acme'), 'scope': [1, 2]})}"),
        ("another RSA key, same kid", f"Bearer {other.sign(claims('acme'))}"),
        ("unknown kid", f"Bearer {RSA.sign(claims('acme'), kid='nope')}"),
        # Algorithm confusion: the RSA public key used as an HMAC secret.
        ("HS256 with the public key", f"Bearer {hs256(claims('acme'), RSA.public_pem)}"),
        # An ES256 header naming the RSA key's kid.
        ("alg of another key type", f"Bearer {EC.sign(claims('acme'), kid=RSA.kid)}"),
        (
            "HS512",
            f"Bearer {jwt.encode(claims('acme'), TEST_SECRET.encode() * 2, algorithm='HS512')}",
        ),
    ]


@pytest.mark.parametrize(
    ("case", "authorization"), _refused_tokens(), ids=[c for c, _ in _refused_tokens()]
)
async def test_refuses(verifier: TokenVerifier, case: str, authorization: str | None) -> None:
    with pytest.raises(Unauthenticated):
        await verifier.verify(authorization)


async def test_a_jwks_only_verifier_refuses_hs256_tokens(jwks_file: Path) -> None:
    verifier = TokenVerifier(jwks=JwksKeys(str(jwks_file)))
    with pytest.raises(Unauthenticated, match="'HS256' are not accepted"):
        await verifier.verify(f"Bearer {hs256(claims('acme'))}")


async def test_issuer_and_audience_when_configured() -> None:
    verifier = TokenVerifier(
        secret=TEST_SECRET.encode(), issuer="https://idp.example", audience="segments"
    )
    good = claims("acme", iss="https://idp.example", aud="segments")
    assert (await verifier.verify(f"Bearer {hs256(good)}")).tenant == "acme"
    for wrong in (
        {**good, "iss": "https://evil.example"},
        {**good, "aud": "pricing"},
        {key: value for key, value in good.items() if key != "aud"},
        {key: value for key, value in good.items() if key != "iss"},
    ):
        with pytest.raises(Unauthenticated):
            await verifier.verify(f"Bearer {hs256(wrong)}")


async def test_an_expired_token_is_refused_even_after_it_was_accepted() -> None:
    verifier = TokenVerifier(secret=TEST_SECRET.encode(), leeway_seconds=0)
    expiring = claims("acme", ttl=2)  # at least a second to be accepted in
    token = f"Bearer {hs256(expiring)}"
    assert (await verifier.verify(token)).tenant == "acme"
    # Until exp, not a fixed time: exp has whole seconds, so it is 1-2 s ahead.
    await asyncio.sleep(max(0.0, expiring["exp"] - time.time()) + 0.05)
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(token)


async def test_jwks_keys_rotate_without_a_new_verifier(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    old, new = SigningKey("old", "RS256"), SigningKey("new", "ES256")
    write_jwks(path, old)
    verifier = TokenVerifier(jwks=JwksKeys(str(path), max_age_seconds=0, min_reload_seconds=0))
    old_token, new_token = f"Bearer {old.sign(claims('a1'))}", f"Bearer {new.sign(claims('a2'))}"
    assert (await verifier.verify(old_token)).tenant == "a1"
    with pytest.raises(Unauthenticated):
        await verifier.verify(new_token)
    write_jwks(path, old, new)  # the new key is published...
    assert (await verifier.verify(new_token)).tenant == "a2"
    write_jwks(path, new)  # ...and the old one withdrawn
    fresh_old_token = f"Bearer {old.sign(claims('a1', ttl=3000))}"  # not in the cache
    with pytest.raises(Unauthenticated):
        await verifier.verify(fresh_old_token)


async def test_an_unreadable_jwks_keeps_the_keys_it_had(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, RSA)
    verifier = TokenVerifier(jwks=JwksKeys(str(path), max_age_seconds=0, min_reload_seconds=0))
    assert (await verifier.verify(f"Bearer {RSA.sign(claims('a1'))}")).tenant == "a1"
    path.write_text("{ not json")
    assert (await verifier.verify(f"Bearer {RSA.sign(claims('a2'))}")).tenant == "a2"


async def test_unknown_kids_reload_the_jwks_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, RSA)
    keys = JwksKeys(str(path), min_reload_seconds=60)
    verifier = TokenVerifier(jwks=keys)
    await verifier.verify(f"Bearer {RSA.sign(claims('a1'))}")
    path.unlink()  # any reload from now on would log a failure and change nothing
    loaded_at = keys._attempted_at
    for n in range(20):
        with pytest.raises(Unauthenticated):
            await verifier.verify(f"Bearer {RSA.sign(claims('a1'), kid=f'made-up-{n}')}")
    assert keys._attempted_at == loaded_at


def test_a_jwks_url_must_use_https_except_on_loopback() -> None:
    with pytest.raises(ValueError, match="must use https"):
        JwksKeys("http://idp.example/.well-known/jwks.json")
    for url in (
        "https://idp.example/.well-known/jwks.json",
        "http://127.0.0.1:8081/jwks.json",
        "http://localhost/jwks.json",
    ):
        assert JwksKeys(url).is_url
