"""What a REST connection may cost (see http_server.py); apart, so that the server process
can pass them on without importing aiohttp."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HttpLimits:
    keepalive_seconds: float = 75.0
    header_timeout_seconds: float = 10.0
    max_connections: int = 1000


DEFAULT_HTTP_LIMITS = HttpLimits()
