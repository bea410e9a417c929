"""The `customer-segments` command: serve, gateway, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from customer_segments.app import migrate, serve, serve_with_workers
from customer_segments.config import ENV_PREFIX, Settings
from customer_segments.gateway.app import run_gateway
from customer_segments.store.database import describe
from customer_segments.store.migrate import SchemaNotCurrent

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
    "--db-pool-size": (
        "db_pool_size",
        "connections per pool; PostgreSQL has a read and a write pool (default 10)",
    ),
    "--pg-statement-cache-size": (
        "pg_statement_cache_size",
        "asyncpg prepared statement cache; 0 behind PgBouncer (default 100)",
    ),
    "--shutdown-grace-seconds": ("shutdown_grace_seconds", "time in-flight calls get (default 10)"),
    "--workers": ("workers", "processes sharing the ports, one core each (default 1)"),
    "--log-level": ("log_level", "DEBUG, INFO, WARNING, ERROR (default INFO)"),
}


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
            "--log-level": _SERVE_FLAGS["--log-level"],
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


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    if arguments.command == "serve":
        settings = _settings(arguments, [field for field, _ in _SERVE_FLAGS.values()])
    elif arguments.command == "gateway":
        settings = _settings(arguments, ["grpc_target", "http_host", "http_port", "log_level"])
    else:
        settings = _settings(arguments, ["database_url", "data_dir"])
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.embedded and arguments.command != "gateway":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if arguments.command == "serve":
            if settings.workers > 1:
                sys.exit(serve_with_workers(settings))
            asyncio.run(serve(settings))
        elif arguments.command == "gateway":
            asyncio.run(run_gateway(settings.grpc_target, settings.http_host, settings.http_port))
        else:
            asyncio.run(migrate(settings))
            print(f"schema is up to date on {describe(settings.effective_database_url)}")
    except (SchemaNotCurrent, ValueError, OSError) as error:
        sys.exit(f"customer-segments: {error}")


if __name__ == "__main__":
    main()
