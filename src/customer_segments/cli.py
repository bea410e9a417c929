"""The `customer-segments` command: serve, gateway, migrate, token, config, health."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence

from customer_segments import event_loop
from customer_segments.app import http_limits, migrate, run
from customer_segments.auth.setup import shared_secret
from customer_segments.auth.tokens import issue_token
from customer_segments.config import (
    FILE_SUFFIX,
    SECRETS,
    Settings,
    SettingsError,
    flag_of,
    load,
    nats_urls_shown,
    origins,
    variable_of,
)
from customer_segments.domain import validation
from customer_segments.domain.errors import InvalidArgument
from customer_segments.grpc.health_check import NotServing, check_health, local_target
from customer_segments.logs import configure_logging
from customer_segments.metrics.exposition import instance_metrics, metrics_server
from customer_segments.shutdown import hold_stop_signals
from customer_segments.startup import StartupError, raise_open_file_limit
from customer_segments.store.database import describe
from customer_segments.store.migrate import SchemaNotCurrent
from customer_segments.tls import channel_tls
from customer_segments.tracing import traced

# The settings each command takes as flags (config.py derives the flag from the field: grpc_port
# -> --grpc-port); each also reads CUSTOMER_SEGMENTS_<FIELD> from the environment. A new field
# is a flag of `serve` unless listed here.
_GATEWAY_ONLY = ("grpc_target", "grpc_ca", "grpc_client_cert", "grpc_client_key")
# Environment (or _FILE) only: a secret on a command line shows in `ps`.
_ENV_ONLY = ("jwt_secret",)
_SERVE = tuple(name for name in Settings.model_fields if name not in (*_GATEWAY_ONLY, *_ENV_ONLY))
# What `gateway` (the gateway alone) takes.
_GATEWAY = (
    "grpc_target",
    "http_host",
    "http_port",
    "grpc_ca",
    "grpc_client_cert",
    "grpc_client_key",
    "log_level",
    "log_format",
    "access_log",
    "metrics_port",
    "cors_origins",
    "max_connections",
    "http_keepalive_seconds",
    "http_header_timeout_seconds",
    "event_loop",
)
_TOKEN = ("data_dir", "jwt_issuer", "jwt_audience")
_MIGRATE = ("database_url", "data_dir")
_HEALTH = ("grpc_host", "grpc_port")
_ENV_HELP = (
    "Every flag also reads CUSTOMER_SEGMENTS_<FLAG> (--grpc-port: CUSTOMER_SEGMENTS_GRPC_PORT); "
    "a flag wins. Environment only: "
    + ", ".join(variable_of(name) for name in _ENV_ONLY)
    + ". Secrets may be files instead: "
    + ", ".join(variable_of(name) + FILE_SUFFIX for name in SECRETS)
    + " hold the path of a file with the value."
)


def _add_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for name in names:
        field = Settings.model_fields[name]
        help_text = field.description or ""
        if field.default is not None and "default" not in help_text:
            shown = field.default if field.default != "" else "none"
            help_text += f" (default {shown})"
        help_text = f"{help_text}; env {variable_of(name)}".replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(
                flag_of(name),
                dest=name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            parser.add_argument(flag_of(name), dest=name, default=None, help=help_text)


def _flags(arguments: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags (a command has only some of them)."""
    return {
        name: getattr(arguments, name)
        for name in Settings.model_fields
        if getattr(arguments, name, None) is not None
    }


def _settings(arguments: argparse.Namespace) -> Settings:
    """The flags over the environment; raises SettingsError, one line naming the flag or
    variable."""
    return load(_flags(arguments))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customer-segments", description="Emporix-compatible customer segment service"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC service", epilog=_ENV_HELP)
    _add_flags(serve, _SERVE)
    config = commands.add_parser(
        "config",
        help="print the effective settings, where each came from, secrets masked",
        description="Prints every setting as `serve` (and `gateway`) would use it with these "
        "flags and the environment, and where each came from; secrets are masked.",
        epilog=_ENV_HELP,
    )
    _add_flags(config, [name for name in Settings.model_fields if name not in _ENV_ONLY])
    gateway = commands.add_parser(
        "gateway",
        help="run the REST gateway alone, in front of a remote gRPC server",
        epilog=_ENV_HELP,
    )
    _add_flags(gateway, _GATEWAY)
    health = commands.add_parser(
        "health",
        help="exit 0 when the local gRPC server reports SERVING (a container's health check)",
        description="Asks grpc.health.v1 of the server on --grpc-port (through 127.0.0.1 when "
        "--grpc-host is a wildcard); exit 0 when SERVING, 1 otherwise.",
    )
    _add_flags(health, _HEALTH)
    health.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the answer (2)"
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
    _add_flags(token, _TOKEN)
    migrate = commands.add_parser("migrate", help="bring a database schema up to date")
    _add_flags(migrate, _MIGRATE)
    return parser


def _shown(name: str, value: object) -> str:
    if value is None or value == "":
        return "none"
    if name == "jwt_secret":
        return "***"
    if name in ("database_url", "database_listen_url"):
        return describe(str(value))
    if name == "events_nats_url":
        return nats_urls_shown(str(value))
    return str(value)


def _print_config(flags: Mapping[str, object], settings: Settings) -> None:
    where = origins(flags)
    rows = [
        (name, _shown(name, getattr(settings, name)), " ".join(where[name]).strip())
        for name in where
    ]
    widths = [max(len(row[column]) for row in rows) for column in (0, 1)]
    for name, value, origin in rows:
        print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {origin}")


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
    try:
        settings = _settings(arguments)
    except SettingsError as error:
        # One line, exit code 2 (as argparse).
        print(f"customer-segments: {error}", file=sys.stderr)
        sys.exit(2)
    if arguments.command == "token":
        print(_token(arguments, settings))
        return
    if arguments.command == "health":
        try:
            check_health(local_target(settings.grpc_host, settings.grpc_port), arguments.timeout)
        except NotServing as error:
            sys.exit(f"customer-segments: {error}")
        return
    # log_level is checked by Settings already, so this cannot fail on it.
    configure_logging(settings.log_level, settings.log_format)
    if settings.embedded and arguments.command in ("serve", "migrate"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if arguments.command == "serve":
            sys.exit(run(settings))
        elif arguments.command == "config":
            _print_config(_flags(arguments), settings)
        elif arguments.command == "gateway":
            from customer_segments.gateway.app import run_gateway  # aiohttp: only here

            tls = channel_tls(settings)  # a mistake in its files is said before anything binds
            with (
                instance_metrics(settings.metrics_port),
                metrics_server(settings.http_host, settings.metrics_port),
                traced("gateway"),
            ):
                event_loop.run(
                    run_gateway(
                        settings.grpc_target,
                        settings.http_host,
                        settings.http_port,
                        http_limits(settings),
                        settings.cors_origin_list,
                        tls,
                        settings.access_log,
                    ),
                    settings.event_loop,
                )
        else:
            asyncio.run(migrate(settings))
            print(f"schema is up to date on {describe(settings.effective_database_url)}")
    except (StartupError, SchemaNotCurrent, ValueError) as error:
        # A mistake of the settings or the environment: one line, exit code 2 (as argparse).
        print(f"customer-segments: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        sys.exit(f"customer-segments: {error}")


if __name__ == "__main__":
    main()
