"""The `customer-segments` command: serve, gateway, migrate."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from customer_segments.app import GatewayDied, http_limits, migrate, run
from customer_segments.auth.setup import shared_secret
from customer_segments.auth.tokens import issue_token
from customer_segments.config import ENV_PREFIX, Settings
from customer_segments.domain import validation
from customer_segments.domain.errors import InvalidArgument
from customer_segments.logs import configure_logging
from customer_segments.shutdown import hold_stop_signals
from customer_segments.startup import StartupError, raise_open_file_limit
from customer_segments.store.database import describe
from customer_segments.store.migrate import SchemaNotCurrent
from customer_segments.tracing import traced

# flag -> settings field; each also reads CUSTOMER_SEGMENTS_<FIELD> from the environment.
_SERVE_FLAGS: dict[str, tuple[str, str]] = {
    "--grpc-host": ("grpc_host", "interface for gRPC (default 0.0.0.0)"),
    "--grpc-port": ("grpc_port", "gRPC port (default 50051)"),
    "--http-host": ("http_host", "interface for the REST gateway (default 0.0.0.0)"),
    "--http-port": ("http_port", "REST gateway port (default 8080)"),
    "--database-url": (
        "database_url",
        "postgresql://user@host:5432/db or sqlite:///path/file.db (default: embedded SQLite)",
    ),
    "--data-dir": ("data_dir", "folder of the embedded database (default ./data)"),
    "--db-pool-size": ("db_pool_size", "database connections for writes (default 10)"),
    "--db-read-pool-size": (
        "db_read_pool_size",
        "database connections for reads by key or index (default 10)",
    ),
    "--db-expensive-read-pool-size": (
        "db_expensive_read_pool_size",
        "database connections for reads a caller can make slow (q with a regular expression); "
        "more such reads queue for them (default 2 on PostgreSQL, 1 on SQLite)",
    ),
    "--pg-statement-cache-size": (
        "pg_statement_cache_size",
        "asyncpg prepared statement cache; 0 behind PgBouncer (default 100)",
    ),
    "--shutdown-grace-seconds": ("shutdown_grace_seconds", "time in-flight calls get (default 10)"),
    "--grpc-max-receive-mb": (
        "grpc_max_receive_mb",
        "largest gRPC request message read, in MiB (default 16)",
    ),
    "--grpc-max-concurrent-rpcs": (
        "grpc_max_concurrent_rpcs",
        "gRPC calls handled at once per worker; more get RESOURCE_EXHAUSTED (default 1000)",
    ),
    "--max-connections": (
        "max_connections",
        "open connections per worker on each port (default 0: below the open-file limit)",
    ),
    "--grpc-max-connection-age-seconds": (
        "grpc_max_connection_age_seconds",
        "gRPC connections are closed (GOAWAY) after this, for L4 balancing (default 0: never)",
    ),
    "--grpc-max-connection-age-grace-seconds": (
        "grpc_max_connection_age_grace_seconds",
        "time calls get to finish on a connection closed for its age (default 30)",
    ),
    "--http-keepalive-seconds": (
        "http_keepalive_seconds",
        "idle REST keep-alive connections are closed after this (default 75)",
    ),
    "--http-header-timeout-seconds": (
        "http_header_timeout_seconds",
        "time a REST connection's first request head may take (default 10)",
    ),
    "--cors-origins": (
        "cors_origins",
        "REST CORS: comma-separated origins (https://shop.example) or * (default: off)",
    ),
    "--workers": ("workers", "processes sharing the ports, one core each (default 1)"),
    "--log-level": ("log_level", "DEBUG, INFO, WARNING, ERROR (default INFO)"),
    "--log-format": (
        "log_format",
        "text or json (default: text on a terminal, json otherwise)",
    ),
    "--access-log": (
        "access_log",
        "one log line per gRPC call and REST request: true or false (default true)",
    ),
    "--metrics-port": (
        "metrics_port",
        "Prometheus /metrics port, one scrape for all processes; 0: off (default 9464)",
    ),
    "--tls-cert": ("tls_cert", "gRPC TLS certificate chain, a PEM file (default: plaintext)"),
    "--tls-key": ("tls_key", "gRPC TLS private key, a PEM file"),
    "--tls-client-ca": (
        "tls_client_ca",
        "CA (PEM) that must sign client certificates: mTLS (default: none asked)",
    ),
    "--jwks": (
        "jwks",
        "JWKS file path or https URL of the RS256/ES256 token keys (default: none)",
    ),
    "--jwt-issuer": ("jwt_issuer", "required token issuer, claim iss (default: not checked)"),
    "--jwt-audience": ("jwt_audience", "required token audience, claim aud (default: none)"),
}
# What `gateway` (the gateway alone) takes of them.
_GATEWAY_FLAGS = [
    "--log-format",
    "--access-log",
    "--metrics-port",
    "--cors-origins",
    "--max-connections",
    "--http-keepalive-seconds",
    "--http-header-timeout-seconds",
]
# Settings read from the environment only: a secret on a command line shows in `ps`.
_ENV_ONLY = ["jwt_secret"]
_TOKEN_SETTINGS = ["data_dir", "jwks", "jwt_issuer", "jwt_audience", "jwt_secret"]


def _add_flags(parser: argparse.ArgumentParser, flags: dict[str, tuple[str, str]]) -> None:
    for flag, (field, help_text) in flags.items():
        parser.add_argument(
            flag, dest=field, default=None, help=f"{help_text}; env {ENV_PREFIX}{field.upper()}"
        )


def _settings(arguments: argparse.Namespace, fields: Sequence[str]) -> Settings:
    values: dict[str, Any] = {}
    for field in fields:
        value = getattr(arguments, field, None)
        if value is None:
            value = os.environ.get(ENV_PREFIX + field.upper()) or None
        if value is not None:
            values[field] = value
    try:
        return Settings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        raise SystemExit(f"customer-segments: invalid {first['loc'][0]}: {first['msg']}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customer-segments", description="Emporix-compatible customer segment service"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC service")
    _add_flags(serve, _SERVE_FLAGS)
    gateway = commands.add_parser(
        "gateway", help="run the REST gateway alone, in front of a remote gRPC server"
    )
    _add_flags(
        gateway,
        {
            "--grpc-target": (
                "grpc_target",
                "HOST:PORT of the gRPC server (default 127.0.0.1:50051)",
            ),
            "--http-host": _SERVE_FLAGS["--http-host"],
            "--http-port": _SERVE_FLAGS["--http-port"],
            "--grpc-ca": ("grpc_ca", "CA (PEM) of the gRPC server's TLS certificate"),
            "--grpc-client-cert": (
                "grpc_client_cert",
                "client certificate (PEM) for a gRPC server that requires mTLS",
            ),
            "--grpc-client-key": ("grpc_client_key", "its private key (PEM)"),
            "--log-level": _SERVE_FLAGS["--log-level"],
            **{flag: _SERVE_FLAGS[flag] for flag in _GATEWAY_FLAGS},
        },
    )
    token = commands.add_parser(
        "token",
        help="print a development access token signed with the shared secret",
        description="Signs with CUSTOMER_SEGMENTS_JWT_SECRET, or else the development secret "
        "in the data directory, which `serve` uses when no JWKS is configured.",
    )
    token.add_argument("--tenant", required=True, help="claim tenant")
    token.add_argument(
        "--scope",
        required=True,
        help='space-separated scopes, e.g. "customersegment.segment_read '
        'customersegment.segment_manage"',
    )
    token.add_argument("--sub", default=None, help="claim sub: the customer id of a customer token")
    token.add_argument(
        "--legal-entity", default=None, help="claim legalEntityId of a B2B customer token"
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (3600)")
    _add_flags(
        token,
        {
            "--data-dir": _SERVE_FLAGS["--data-dir"],
            "--jwt-issuer": _SERVE_FLAGS["--jwt-issuer"],
            "--jwt-audience": _SERVE_FLAGS["--jwt-audience"],
        },
    )
    migrate = commands.add_parser("migrate", help="bring a database schema up to date")
    _add_flags(
        migrate,
        {
            "--database-url": _SERVE_FLAGS["--database-url"],
            "--data-dir": _SERVE_FLAGS["--data-dir"],
        },
    )
    return parser


def _token(arguments: argparse.Namespace, settings: Settings) -> str:
    if arguments.ttl < 1:
        raise SystemExit("customer-segments: --ttl must be at least 1 second")
    try:
        validation.tenant(arguments.tenant)
        secret = shared_secret(settings)
    except (InvalidArgument, ValueError) as error:
        raise SystemExit(f"customer-segments: {error}") from None
    if secret is None:
        raise SystemExit(
            "customer-segments: no shared secret (a JWKS is configured): "
            "take tokens from the identity provider that owns its keys"
        )
    return issue_token(
        secret,
        tenant=arguments.tenant,
        scopes=arguments.scope.split(),
        subject=arguments.sub,
        legal_entity_id=arguments.legal_entity,
        ttl_seconds=arguments.ttl,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    if arguments.command in ("serve", "gateway"):
        # Until the handlers exist, a stop signal waits instead of killing us (shutdown.py).
        hold_stop_signals()
        raise_open_file_limit()
    if arguments.command == "serve":
        settings = _settings(arguments, [field for field, _ in _SERVE_FLAGS.values()] + _ENV_ONLY)
    elif arguments.command == "token":
        print(_token(arguments, _settings(arguments, _TOKEN_SETTINGS)))
        return
    elif arguments.command == "gateway":
        settings = _settings(
            arguments,
            [
                "grpc_target",
                "grpc_ca",
                "grpc_client_cert",
                "grpc_client_key",
                "http_host",
                "http_port",
                "log_level",
                *(_SERVE_FLAGS[flag][0] for flag in _GATEWAY_FLAGS),
            ],
        )
    else:
        settings = _settings(arguments, ["database_url", "data_dir"])
    configure_logging(settings.log_level, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.embedded and arguments.command != "gateway":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if arguments.command == "serve":
            sys.exit(run(settings))
        elif arguments.command == "gateway":
            from customer_segments.gateway.app import run_gateway  # aiohttp: only here

            with traced("gateway"):
                asyncio.run(
                    run_gateway(
                        settings.grpc_target,
                        settings.http_host,
                        settings.http_port,
                        http_limits(settings),
                        settings.cors_origin_list,
                    )
                )
        else:
            asyncio.run(migrate(settings))
            print(f"schema is up to date on {describe(settings.effective_database_url)}")
    except (StartupError, SchemaNotCurrent, ValueError) as error:
        # A mistake of the settings or the environment: one line, exit code 2 (as argparse).
        print(f"customer-segments: {error}", file=sys.stderr)
        sys.exit(2)
    except (GatewayDied, OSError) as error:
        sys.exit(f"customer-segments: {error}")


if __name__ == "__main__":
    main()
