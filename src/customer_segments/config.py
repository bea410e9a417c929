"""Settings from flags, environment variables (CUSTOMER_SEGMENTS_*) and, for secrets, files
named by CUSTOMER_SEGMENTS_*_FILE, validated once (pydantic-settings).

A setting is one field: its description is the flag's help, its flag and variable are derived
from its name (flag_of, variable_of)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from customer_segments.domain.webhooks import DEFAULT_RETRY_SCHEDULE, retry_schedule

ENV_PREFIX = "CUSTOMER_SEGMENTS_"
FILE_SUFFIX = "_FILE"
# Settings that may come from a file (a mounted Kubernetes or Docker secret), and that
# `config` masks.
SECRETS = ("jwt_secret", "database_url", "database_listen_url")
# An origin as browsers send it: scheme://host[:port], no path.
_ORIGIN = re.compile(r"https?://[^/\s,*]+")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What nats-py connects to.
_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


class SettingsError(ValueError):
    """A setting that cannot be used: one line naming its flag or variable."""


class Settings(BaseSettings):
    # Keyword arguments (the flags) win over the environment, which wins over the defaults.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid"
    )

    grpc_host: str = Field("0.0.0.0", description="interface for gRPC")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port")
    http_host: str = Field("0.0.0.0", description="interface for the REST gateway")
    http_port: int = Field(8080, ge=0, le=65535, description="REST gateway port")
    # `customer-segments gateway` only, as are grpc_ca and grpc_client_*.
    grpc_target: str = Field(
        "127.0.0.1:50051", description="HOST:PORT of the gRPC server the gateway calls"
    )
    # None: the embedded SQLite database in data_dir.
    database_url: str | None = Field(
        None,
        description="postgresql://user@host:5432/db or sqlite:///path/file.db "
        "(default: embedded SQLite)",
    )
    # Behind PgBouncer in transaction mode a server connection is a client's for one
    # transaction only, so what needs a session of its own (LISTEN of the change events) must
    # bypass it. Unused until the events' LISTEN connection arrives (README "Scaling").
    database_listen_url: str | None = Field(
        None,
        description="postgresql:// URL straight to PostgreSQL, not through PgBouncer, for "
        "session-level connections such as LISTEN (default: the database URL)",
    )
    data_dir: Path = Field(Path("data"), description="folder of the embedded database")
    # Connections of each pool (per worker): writes, plain reads, and reads a caller can make
    # slow (q with a regular expression), which queue for their few connections.
    db_pool_size: int = Field(10, ge=1, le=1000, description="database connections for writes")
    db_read_pool_size: int = Field(
        10, ge=1, le=1000, description="database connections for reads by key or index"
    )
    # None: 2 on PostgreSQL, 1 on SQLite (whose reads run on the service's own CPU).
    db_expensive_read_pool_size: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="database connections for reads a caller can make slow (q with a regular "
        "expression); more such reads queue for them (default 2 on PostgreSQL, 1 on SQLite)",
    )
    pg_statement_cache_size: int = Field(
        100, ge=0, description="asyncpg prepared statement cache; 0 behind PgBouncer"
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="time in-flight calls get to finish on stop"
    )
    # At least what the gateway sends for a REST body of 10 MB (11 MiB, limits.py).
    grpc_max_receive_mb: int = Field(
        16, ge=11, le=2047, description="largest gRPC request message read, in MiB"
    )
    # More calls are refused before their message is read, which bounds what authenticated
    # callers can make it hold.
    grpc_max_concurrent_rpcs: int = Field(
        1000,
        ge=1,
        description="gRPC calls handled at once per worker; more get RESOURCE_EXHAUSTED",
    )
    # 0: the open-file limit minus a reserve, so that accept() never runs out of descriptors.
    max_connections: int = Field(
        0,
        ge=0,
        description="open connections per worker on each port (default 0: below the open-file "
        "limit)",
    )
    # Behind an L4 balancer, connections must end now and then to spread again.
    grpc_max_connection_age_seconds: float = Field(
        0.0,
        ge=0,
        description="gRPC connections are closed (GOAWAY) after this, for L4 balancing "
        "(default 0: never)",
    )
    grpc_max_connection_age_grace_seconds: float = Field(
        30.0, ge=0, description="time calls get to finish on a connection closed for its age"
    )
    # Longer than the 60 s idle timeout of common load balancers, so that they close first.
    http_keepalive_seconds: float = Field(
        75.0, gt=0, description="idle REST keep-alive connections are closed after this"
    )
    http_header_timeout_seconds: float = Field(
        10.0, gt=0, description="time a REST connection's first request head may take"
    )
    cors_origins: str = Field(
        "",
        description="REST CORS: comma-separated origins (https://shop.example) or * (default: off)",
    )
    # SO_REUSEPORT: one asyncio loop uses one core.
    workers: int = Field(1, ge=1, le=64, description="processes sharing the ports, one core each")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="event loop of the server processes: uvloop or asyncio"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    # A log collector reads stderr.
    log_format: Literal["text", "json"] | None = Field(
        None, description="text or json (default: text on a terminal, json otherwise)"
    )
    access_log: bool = Field(True, description="one log line per gRPC call and REST request")
    # Off: no change event is written (the outbox stays as it is; watchers see nothing new).
    events: bool = Field(True, description="write a change event for every write (outbox)")
    # A pydantic timedelta: ISO 8601 (P7D, PT1H) or seconds.
    events_retention: timedelta = Field(
        timedelta(days=7),
        gt=timedelta(0),
        description="change events older than this are pruned: ISO 8601 (P7D, PT1H) or "
        "seconds (default P7D)",
    )
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Prometheus /metrics port, one scrape for all processes; 0: off",
    )
    tls_cert: Path | None = Field(
        None, description="gRPC TLS certificate chain, a PEM file (default: plaintext)"
    )
    tls_key: Path | None = Field(None, description="gRPC TLS private key, a PEM file")
    tls_client_ca: Path | None = Field(
        None, description="CA (PEM) that must sign client certificates: mTLS (default: none asked)"
    )
    grpc_ca: Path | None = Field(None, description="CA (PEM) of the gRPC server's TLS certificate")
    grpc_client_cert: Path | None = Field(
        None,
        description="client certificate (PEM) for a gRPC server that requires mTLS",
    )
    grpc_client_key: Path | None = Field(
        None, description="the client certificate's private key (PEM)"
    )
    # HS256 is for development; without a secret and without a JWKS, one is made once in
    # data_dir. No flag: a secret on a command line shows in `ps`.
    jwt_secret: str | None = Field(
        None,
        min_length=32,
        description="HS256 token secret, at least 32 characters (default: made once in the "
        "data dir, unless a JWKS is given)",
    )
    jwks: str | None = Field(
        None,
        description="JWKS file path or https URL of the RS256/ES256 token keys (default: none)",
    )
    jwt_issuer: str | None = Field(
        None, description="required token issuer, claim iss (default: not checked)"
    )
    jwt_audience: str | None = Field(
        None, description="required token audience, claim aud (default: none)"
    )

    # Webhooks (services/webhook_delivery.py).
    webhook_retry_schedule: str = Field(
        DEFAULT_RETRY_SCHEDULE,
        description="delay before each webhook delivery attempt, comma-separated (500ms, 5s, 5m, "
        "2h, 1d); after the last, the delivery is FAILED",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="time a webhook receiver has to answer one delivery"
    )
    webhook_poll_interval_seconds: float = Field(
        0.5, gt=0, le=60, description="how often the outbox is polled for webhook deliveries"
    )
    webhook_lease_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="how long a process holds a webhook endpoint without renewing its lease "
        "(after a crash, another process takes over once it runs out)",
    )
    webhook_max_concurrent_deliveries: int = Field(
        64, ge=1, le=10_000, description="webhook POSTs in flight at once per worker"
    )
    # Off by default; when set, each serve process publishes the outbox's events to JetStream
    # (services/nats_publisher.py).
    events_nats_url: str | None = Field(
        None,
        description="NATS server to publish every event to (JetStream): nats://host:4222, "
        "several comma-separated (default: none, off)",
    )
    # Stream names are one subject token (no dots, wildcards, spaces or path separators).
    events_nats_stream: str = Field(
        "CUSTOMER_SEGMENTS",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="JetStream stream of the subjects customer-segment.>, created if absent",
    )
    events_nats_poll_seconds: float = Field(
        0.25,
        gt=0,
        le=60,
        description="how often the NATS publisher looks for new events in the outbox",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, SecretFiles(settings_cls)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(_LOG_LEVELS)}")
        return value.upper()

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        retry_schedule(value)
        return value

    @field_validator("webhook_lease_seconds")
    @classmethod
    def _lease(cls, value: float, info: ValidationInfo) -> float:
        poll = info.data.get("webhook_poll_interval_seconds")
        if poll is not None and value < 3 * poll:
            raise ValueError("must be at least 3 times --webhook-poll-interval-seconds")
        return value

    @field_validator("events_retention", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # Flags and variables are text, and pydantic reads a bare number as seconds only
        # when it is a number.
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            return float(value)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _origin_list(value):
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port], no path) or *"
                )
        return value

    @field_validator("events_nats_url")
    @classmethod
    def _nats_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for url in value.split(","):
            parsed = urlsplit(url.strip())
            if parsed.scheme not in _NATS_SCHEMES or not parsed.hostname:
                raise ValueError(
                    f"{url.strip()!r} is not a NATS URL (nats://host:4222; also tls://, ws://, "
                    "wss://)"
                )
        return value

    @field_validator("database_listen_url")
    @classmethod
    def _listen_url(cls, value: str | None) -> str | None:
        # LISTEN exists on PostgreSQL only; the embedded database needs no second URL.
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (LISTEN is PostgreSQL's)")
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

    @property
    def effective_listen_url(self) -> str:
        """Where session-level connections (LISTEN) go: past PgBouncer when one is in front."""
        return self.database_listen_url or self.effective_database_url


class SecretFiles(PydanticBaseSettingsSource):
    """CUSTOMER_SEGMENTS_<SECRET>_FILE: the path of a file holding the secret, without its
    trailing newline (as `echo` and editors write it)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every secret itself

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SECRETS:
            variable = variable_of(name) + FILE_SUFFIX
            path = os.environ.get(variable)
            if not path:
                continue
            if os.environ.get(variable_of(name)):
                raise SettingsError(f"{variable_of(name)} and {variable} are both set: give one")
            try:
                text = Path(path).read_text()
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or "not UTF-8 text"
                raise SettingsError(f"{variable}: cannot read {path}: {reason}") from None
            value = text.removesuffix("\n").removesuffix("\r")
            if not value:
                raise SettingsError(f"{variable}: {path} is empty")
            values[name] = value
        return values


def nats_urls_shown(value: str) -> str:
    """The NATS URLs without their credentials (user and password, or a token as the user)."""
    shown = []
    for url in value.split(","):
        parts = urlsplit(url.strip())
        if "@" in parts.netloc:
            parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
        shown.append(parts.geturl())
    return ",".join(shown)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def variable_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def load(flags: Mapping[str, Any]) -> Settings:
    """The settings of these flags (field name -> value given) over the environment; a bad
    value is a SettingsError naming where it came from."""
    try:
        return Settings(**flags)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        where = origins(flags).get(name, ("", ""))[1] or name
        message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix: noise here
        raise SettingsError(f"invalid {where}: {message}") from None


def origins(flags: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Where each setting came from: (flag, its flag), (env, its variable), (file, its _FILE
    variable) or (default, "")."""
    from_env = EnvSettingsSource(Settings)()
    from_files = SecretFiles(Settings)()
    found: dict[str, tuple[str, str]] = {}
    for name in Settings.model_fields:
        if name in flags:
            found[name] = ("flag", flag_of(name))
        elif name in from_env:
            found[name] = ("env", variable_of(name))
        elif name in from_files:
            found[name] = ("file", variable_of(name) + FILE_SUFFIX)
        else:
            found[name] = ("default", "")
    return found


def _origin_list(value: str) -> tuple[str, ...]:
    # Browsers send the origin without a trailing slash, host in lower case.
    return tuple(
        origin.strip().rstrip("/").lower() for origin in value.split(",") if origin.strip()
    )
