"""Public keys from a JWKS file or URL, cached, and reloaded when they rotate.

A token names its key by `kid`. An unknown kid makes the keys reload (at most once per
`min_reload_seconds`, so that a flood of tokens with made-up kids cannot hammer the key
server), which is how a key added by a rotation is picked up without a restart. Keys are also
reloaded every `max_age_seconds`, so that a removed key stops being trusted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from customer_segments import metrics

log = logging.getLogger(__name__)

# What a JWKS key may sign with, by key type: an RSA key never verifies an ES256 token, and no
# key from a JWKS ever verifies an HS256 one (that would be the classic algorithm confusion).
KEY_TYPE_OF_ALGORITHM = {"RS256": "RSA", "ES256": "EC"}
FETCH_TIMEOUT_SECONDS = 5.0
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _usable_keys(document: Any) -> dict[str | None, list[jwt.PyJWK]]:
    """The signing keys of a JWKS document, by kid; keys this service cannot use are skipped."""
    keys: dict[str | None, list[jwt.PyJWK]] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS document (no 'keys' array)")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError as error:
            log.warning("JWKS key %r skipped: %s", entry.get("kid"), error)
            continue
        if KEY_TYPE_OF_ALGORITHM.get(key.algorithm_name) != key.key_type:
            log.warning("JWKS key %r skipped: %s is not RS256 or ES256", key.key_id, key.key_type)
            continue
        keys.setdefault(key.key_id, []).append(key)
    return keys


def _count(*, loaded: bool) -> None:
    instruments = metrics.instruments()
    if instruments is not None:
        (instruments.jwks_loaded if loaded else instruments.jwks_failed).inc()


class JwksKeys:
    def __init__(
        self,
        source: str,
        *,
        max_age_seconds: float = 300.0,
        min_reload_seconds: float = 1.0,
    ) -> None:
        if source.startswith("http://") and urlsplit(source).hostname not in _LOOPBACK:
            # Keys fetched in clear text could be swapped by anyone on the path.
            raise ValueError(f"the JWKS URL {source} must use https (http only on loopback)")
        self.source = source
        self.max_age_seconds = max_age_seconds
        self.min_reload_seconds = min_reload_seconds
        self._keys: dict[str | None, list[jwt.PyJWK]] = {}
        self._loaded_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("https://", "http://"))

    async def load(self) -> None:
        """Reads the keys at start. A JWKS file that cannot be read or is no JWKS is a mistake
        of the settings (ValueError); a URL that cannot be fetched only warns, since a key
        server may be back soon (until then tokens are refused, and it is tried again)."""
        self._attempted_at = time.monotonic()
        try:
            self._keys = _usable_keys(await self._read())
            self._loaded_at = time.monotonic()
            _count(loaded=True)
        except (OSError, ValueError) as error:  # TimeoutError and ConnectionError are OSErrors
            _count(loaded=False)
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            if not self.is_url:
                raise ValueError(f"cannot use the JWKS file {self.source}: {reason}") from None
            log.warning("could not load the JWKS from %s: %s", self.source, reason)

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The key that may have signed a token with this header, or None."""
        stale = time.monotonic() - self._loaded_at > self.max_age_seconds
        if stale and self._may_reload():
            await self._reload()
        found = self._find(kid, algorithm)
        if found is None and self._may_reload():
            await self._reload()
            found = self._find(kid, algorithm)
        return found

    def _may_reload(self) -> bool:
        return time.monotonic() - self._attempted_at >= self.min_reload_seconds

    def _find(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        if kid is None:
            # Without a kid, only a JWKS of exactly one key of the right kind is unambiguous.
            candidates = [key for keys in self._keys.values() for key in keys]
        else:
            candidates = self._keys.get(kid, [])
        matching = [key for key in candidates if key.algorithm_name == algorithm]
        return matching[0] if len(matching) == 1 else None

    async def _reload(self) -> None:
        attempted = time.monotonic()
        async with self._lock:
            if self._attempted_at >= attempted:
                return  # another call reloaded while this one waited
            self._attempted_at = time.monotonic()
            try:
                self._keys = _usable_keys(await self._read())
                self._loaded_at = time.monotonic()
                _count(loaded=True)
            except (OSError, ValueError) as error:  # TimeoutError and ConnectionError are OSErrors
                _count(loaded=False)
                # Keep the keys we have: a key server that blips must not log everyone out.
                log.warning("could not load the JWKS from %s: %s", self.source, error)

    async def _read(self) -> Any:
        if not self.is_url:
            text = await asyncio.to_thread(Path(self.source).read_text, "utf-8")
            return json.loads(text)
        # aiohttp's client takes about half a second to import (it loads the CA certificates):
        # only a server with a JWKS URL pays for it, and only when it first fetches.
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.source) as response,
            ):
                response.raise_for_status()
                return json.loads(await response.text())
        except aiohttp.ClientError as error:
            raise ConnectionError(f"{error.__class__.__name__}: {error}") from None
