"""Settings from flags and environment variables (CUSTOMER_SEGMENTS_*), validated once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PREFIX = "CUSTOMER_SEGMENTS_"
# An origin as browsers send it: scheme://host[:port], no path.
_ORIGIN = re.compile(r"https?://[^/\s,*]+")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(50051, ge=0, le=65535)
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    # `customer-segments gateway` only: the gRPC server to call.
    grpc_target: str = "127.0.0.1:50051"
    # None: the embedded SQLite database in data_dir.
    database_url: str | None = None
    data_dir: Path = Path("data")
    # Connections of each pool (per worker): writes, plain reads, and reads a caller can make
    # slow (q with a regular expression), which queue for their few connections.
    db_pool_size: int = Field(10, ge=1, le=1000)
    db_read_pool_size: int = Field(10, ge=1, le=1000)
    # None: 2 on PostgreSQL, 1 on SQLite (whose reads run on the service's own CPU).
    db_expensive_read_pool_size: int | None = Field(None, ge=1, le=1000)
    # asyncpg prepared statements; 0 behind PgBouncer in transaction mode.
    pg_statement_cache_size: int = Field(100, ge=0)
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    # The largest gRPC message the server reads: at least what the gateway sends for a REST
    # body of 10 MB (11 MiB, limits.py).
    grpc_max_receive_mb: int = Field(16, ge=11, le=2047)
    # Calls being handled at once per process; more are refused with RESOURCE_EXHAUSTED
    # before their message is read, which bounds what authenticated callers can make it hold.
    grpc_max_concurrent_rpcs: int = Field(1000, ge=1)
    # Open connections per process, on the gRPC port and on the REST port each; 0: the
    # open-file limit minus a reserve, so that accept() never runs out of descriptors.
    max_connections: int = Field(0, ge=0)
    # 0: never. Behind an L4 balancer, connections must end now and then to spread again.
    grpc_max_connection_age_seconds: float = Field(0.0, ge=0)
    grpc_max_connection_age_grace_seconds: float = Field(30.0, ge=0)
    # REST: an idle keep-alive connection is closed after this (longer than the 60 s idle
    # timeout of common load balancers, so that they close first); request headers must
    # arrive within http_header_timeout_seconds of their first byte.
    http_keepalive_seconds: float = Field(75.0, gt=0)
    http_header_timeout_seconds: float = Field(10.0, gt=0)
    # REST CORS: comma-separated origins (https://shop.example), or `*`; empty: off.
    cors_origins: str = ""
    # Processes serving one port (SO_REUSEPORT): one asyncio loop uses one core.
    workers: int = Field(1, ge=1, le=64)
    log_level: str = "INFO"
    # None: text on a terminal, JSON lines otherwise (a log collector reads stderr).
    log_format: Literal["text", "json"] | None = None
    # One line per gRPC call and per REST request.
    access_log: bool = True
    # Prometheus /metrics on a port of its own, one scrape for every process; 0: off.
    metrics_port: int = Field(9464, ge=0, le=65535)
    # gRPC TLS: certificate chain and key (PEM files); with a client CA, clients must present
    # a certificate it signed (mTLS). None: plaintext.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # `customer-segments gateway` only: how it reaches a gRPC server that serves TLS.
    grpc_ca: Path | None = None
    grpc_client_cert: Path | None = None
    grpc_client_key: Path | None = None
    # Access tokens. HS256 with this secret (development; without it and without a JWKS, a
    # secret is made once in data_dir); RS256/ES256 with keys from a JWKS file path or URL.
    jwt_secret: str | None = Field(None, min_length=32)
    jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _origin_list(value):
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port], no path) or *"
                )
        return value

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return _origin_list(self.cors_origins)

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'customer-segments.db').resolve()}"


def _origin_list(value: str) -> tuple[str, ...]:
    # Browsers send the origin without a trailing slash, host in lower case.
    return tuple(
        origin.strip().rstrip("/").lower() for origin in value.split(",") if origin.strip()
    )
