"""Wiring: settings -> database -> store -> servers, and the order they start and stop in."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from customer_segments import event_loop
from customer_segments.auth.setup import shared_secret, token_verifier
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.config import Settings
from customer_segments.domain.webhooks import retry_schedule
from customer_segments.gateway.app import start_gateway_on
from customer_segments.gateway.connection_limits import HttpLimits
from customer_segments.grpc.server import ServerLimits, start_grpc_server
from customer_segments.limits import MIB
from customer_segments.logs import configure_logging, flush_logs
from customer_segments.metrics.exposition import instance_metrics, metrics_server, process_exited
from customer_segments.services.webhook_delivery import DeliverySettings, WebhookDispatcher
from customer_segments.shutdown import (
    children_ignore_stop_signals,
    hold_stop_signals,
    release_stop_signals,
    stop_requested,
)
from customer_segments.startup import (
    PortLock,
    StartupError,
    connection_limit,
    lock_ports,
    port_taken,
    require_free_port,
)
from customer_segments.store import unreachable
from customer_segments.store.database import Database
from customer_segments.store.migrate import (
    SchemaNotCurrent,
    require_current_schema,
    upgrade_to_head,
)
from customer_segments.store.notifier import EventNotifier
from customer_segments.store.store import Store
from customer_segments.tls import server_tls
from customer_segments.tracing import trace_database, traced, tracing_settings

if TYPE_CHECKING:
    from customer_segments.services.nats_publisher import NatsPublisher

log = logging.getLogger(__name__)

# A worker's exit code when it could not start: it said why on stderr, the parent adds nothing.
STARTUP_FAILED = 2


def _database(url: str, **options: Any) -> Database:
    missing = unreachable.missing_before_connecting(url)
    if missing is not None:
        raise StartupError(missing)
    return Database(url, **options)


@asynccontextmanager
async def _database_errors(database: Database, url: str) -> AsyncIterator[None]:
    """A database that cannot be used is a StartupError naming it and what to do."""
    try:
        yield
    except BaseException as error:
        await database.dispose()
        if isinstance(error, SchemaNotCurrent):
            raise StartupError(str(error)) from None
        explained = unreachable.explain(url, error) if isinstance(error, Exception) else None
        if explained is None:
            raise
        raise StartupError(explained) from None


async def open_store(settings: Settings, *, migrate_embedded: bool = True) -> Store:
    """The embedded database (its folder must exist) is migrated on start; PostgreSQL must be
    migrated beforehand."""
    url = settings.effective_database_url
    database = _database(
        url,
        pool_size=settings.db_pool_size,
        read_pool_size=settings.db_read_pool_size,
        expensive_read_pool_size=settings.db_expensive_read_pool_size,
        statement_cache_size=settings.pg_statement_cache_size,
    )
    async with _database_errors(database, url):
        if settings.embedded and migrate_embedded:
            await upgrade_to_head(database)
        else:
            await require_current_schema(database)
    return Store(database, events=settings.events)


async def checked_token_verifier(settings: Settings) -> TokenVerifier:
    """The verifier, with its JWKS read once: a JWKS file that cannot be used is a mistake."""
    try:
        verifier = token_verifier(settings)
        if verifier.jwks is not None:
            await verifier.jwks.load()
    except ValueError as error:
        raise StartupError(str(error)) from None
    return verifier


def start_nats_publisher(store: Store, settings: Settings) -> NatsPublisher | None:
    """With --events-nats-url, the background task that publishes the outbox to JetStream
    (nats-py is imported only then: a quarter of a second of start-up)."""
    if settings.events_nats_url is None:
        return None
    from customer_segments.services.nats_publisher import NatsOptions, NatsPublisher

    publisher = NatsPublisher(
        store,
        NatsOptions(
            settings.events_nats_url,
            settings.events_nats_stream,
            settings.events_nats_poll_seconds,
        ),
    )
    publisher.start()
    return publisher


def server_limits(settings: Settings) -> ServerLimits:
    return ServerLimits(
        max_receive_bytes=settings.grpc_max_receive_mb * MIB,
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
        max_connections=connection_limit(settings.max_connections),
        max_connection_age_seconds=settings.grpc_max_connection_age_seconds,
        max_connection_age_grace_seconds=settings.grpc_max_connection_age_grace_seconds,
    )


def delivery_settings(settings: Settings) -> DeliverySettings:
    return DeliverySettings(
        retry_schedule=retry_schedule(settings.webhook_retry_schedule),
        timeout_seconds=settings.webhook_timeout_seconds,
        poll_interval_seconds=settings.webhook_poll_interval_seconds,
        lease_seconds=settings.webhook_lease_seconds,
        max_concurrent=settings.webhook_max_concurrent_deliveries,
    )


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        keepalive_seconds=settings.http_keepalive_seconds,
        header_timeout_seconds=settings.http_header_timeout_seconds,
        max_connections=connection_limit(settings.max_connections),
    )


async def serve(
    settings: Settings,
    *,
    migrate_embedded: bool = True,
    parent: tuple[int, Any] | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT (to any process of the instance). A worker's `parent` is
    the parent's sentinel (readable once it is gone: the worker stops too) and its stop event
    (set when it was asked to stop, perhaps while this worker still ignored signals)."""
    stop = stop_requested()
    try:
        if parent is not None:
            sentinel, stopping = parent
            asyncio.get_running_loop().add_reader(sentinel, stop.set)
            if stopping.is_set():
                stop.set()
        # Here, in the process that serves: a worker starts the batch processor's thread after
        # the fork, never inherits one.
        with traced("grpc-server"):
            await _serve(settings, stop, migrate_embedded)
    finally:
        hold_stop_signals()  # a late signal, once the loop's handlers are gone, must not kill


async def _serve(settings: Settings, stop: asyncio.Event, migrate_embedded: bool) -> None:
    verifier = await checked_token_verifier(settings)
    store = await open_store(settings, migrate_embedded=migrate_embedded)
    trace_database(store.database.engines, store.database.dialect)
    grace = settings.shutdown_grace_seconds
    publisher = None
    try:
        share_port = settings.workers > 1
        grpc_server = await start_grpc_server(
            store,
            settings.grpc_host,
            settings.grpc_port,
            verifier=verifier,
            share_port=share_port,
            limits=server_limits(settings),
            tls=server_tls(settings),
            access_log=settings.access_log,
            events_retention=settings.events_retention,
            listen_url=settings.database_listen_url,
        )
        # Every serve process delivers webhooks; leases keep one process per endpoint.
        dispatcher = WebhookDispatcher(store, delivery_settings(settings))
        await dispatcher.start()
        try:
            # The REST gateway calls this process's gRPC methods through the stubs like any
            # client, but in process (grpc/in_process.py): with --workers, each worker's
            # gateway serves the shared REST port and calls its own server.
            gateway = await start_gateway_on(
                grpc_server.channel.as_channel(),
                settings.http_host,
                settings.http_port,
                grace,
                share_port=share_port,
                limits=http_limits(settings),
                cors_origins=settings.cors_origin_list,
                access_log=settings.access_log,
            )
        except BaseException as error:
            await dispatcher.stop()
            await grpc_server.stop(0)
            if isinstance(error, OSError):
                reason = error.strerror or str(error)
                raise port_taken(
                    settings.http_host, settings.http_port, "REST", "--http-port", reason
                ) from None
            raise
        log.info("REST gateway listening on %s:%d", settings.http_host, gateway.port)
        publisher = start_nats_publisher(store, settings)
        wakes = [dispatcher.wake] + ([publisher.wake] if publisher is not None else [])
        relay = asyncio.create_task(relay_commits(grpc_server.notifier, wakes))
        # Everything made at start-up (modules, compiled statements, descriptors) lives as
        # long as the process: out of the collector's sight, a full collection, which bulk
        # calls trigger often (their items outlive the young generations), walks only what
        # calls made. And collections far less often than every 700 allocations: a bulk
        # chunk allocates some 10 objects per item, nearly none of them in a cycle (measured:
        # 8% less CPU per bulk row; at most some 20,000 young objects wait for a collection).
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        await stop.wait()
        relay.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # At once: health NOT_SERVING, no new calls on the public port, REST readiness 503;
        # then what is in flight drains (REST requests still reach the services through the
        # in-process channel), all within one grace period.
        await grpc_server.stop_accepting(grace)
        log.info(
            "stopping: health NOT_SERVING, new calls refused; in-flight REST requests and gRPC "
            "calls get %ss",
            grace,
        )
        await dispatcher.stop()
        await gateway.stop()
        await grpc_server.stop(max(0.0, deadline - loop.time()))
    finally:
        if publisher is not None:
            # Its leases given up, so that another process takes its tenants over at once.
            await publisher.stop()
        await store.close()
    log.info("stopped")


async def relay_commits(notifier: EventNotifier, wakes: list[Callable[[], None]]) -> None:
    """Webhooks and NATS look at the outbox as soon as a commit tells this process's notifier
    there is something new, rather than at their next poll."""
    with notifier.subscribe(None) as subscription:
        while not notifier.closed:
            subscription.clear()
            if await subscription.wait(within=60.0):
                for wake in wakes:
                    wake()


def claim_ports(settings: Settings) -> list[PortLock]:
    """One instance per port: a second one is refused with a message, whatever --workers says
    (SO_REUSEPORT would let it join silently); a port taken by anything else likewise."""
    ports = [
        (settings.grpc_host, settings.grpc_port, "gRPC", "--grpc-port"),
        (settings.http_host, settings.http_port, "REST", "--http-port"),
        (settings.http_host, settings.metrics_port, "metrics", "--metrics-port"),
    ]
    fixed = [(port, flag) for _, port, _, flag in ports if port]
    for number, (port, flag) in enumerate(fixed):
        for other_port, other_flag in fixed[number + 1 :]:
            if port == other_port:
                raise StartupError(f"{flag} and {other_flag} must differ")
    locks = lock_ports([(port, what, flag) for _, port, what, flag in ports])
    try:
        for host, port, what, flag in ports:
            require_free_port(host, port, what, flag)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def run(settings: Settings) -> int:
    """`serve`: the exit code of a stop; StartupError for a mistake found before serving."""
    server_tls(settings)  # once, before any worker: each would say the same
    tracing_settings()  # a mistake in OTEL_* is said once, not by each worker
    locks = claim_ports(settings)
    try:
        with instance_metrics(settings.metrics_port):
            if settings.workers > 1:
                return serve_with_workers(settings)
            with metrics_server(settings.http_host, settings.metrics_port):
                event_loop.run(serve(settings), settings.event_loop)
            return 0
    finally:
        for lock in locks:
            lock.release()


def _worker(settings: Settings, stopping: Any) -> None:
    # force: the parent's set-up is inherited
    configure_logging(settings.log_level, settings.log_format, process="worker", force=True)
    parent = multiprocessing.parent_process()
    assert parent is not None
    try:
        event_loop.run(
            serve(settings, migrate_embedded=False, parent=(parent.sentinel, stopping)),
            settings.event_loop,
        )
    except StartupError as error:
        print(f"customer-segments: {error}", file=sys.stderr)
        sys.exit(STARTUP_FAILED)
    finally:
        flush_logs()  # multiprocessing ends a worker with os._exit: no logging.shutdown()


async def _check_before_workers(settings: Settings) -> None:
    """What every worker would find wrong, found once: the JWKS and the database (the
    embedded one is migrated here, before the workers open it)."""
    await checked_token_verifier(settings)
    store = await open_store(settings, migrate_embedded=True)
    await store.close()


def serve_with_workers(settings: Settings) -> int:
    """Runs `settings.workers` processes that share the ports (SO_REUSEPORT); the kernel spreads
    connections over them. Checks the settings first, forwards SIGTERM/SIGINT, stops all when
    one fails, and returns 0 only if every worker stopped cleanly."""
    if settings.grpc_port == 0:
        raise StartupError(
            "--workers needs a fixed --grpc-port: every worker must bind the same one"
        )
    asyncio.run(_check_before_workers(settings))
    shared_secret(settings)  # the development secret, if any, exists before the workers read it
    # Forked: this process has made no gRPC object and runs no thread (the check above has
    # closed its loop and pool), so a child inherits no state of gRPC's threads, and it need
    # not import everything again (spawned, each worker cost a second of CPU more to start).
    context = multiprocessing.get_context("fork")
    stopping = context.Event()
    workers = [
        context.Process(target=_worker, args=(settings, stopping), name=f"worker-{n}")
        for n in range(settings.workers)
    ]
    with children_ignore_stop_signals():  # until their handlers exist (see shutdown.py)
        for worker in workers:
            flush_logs()  # each child would write the lines still pending again
            worker.start()

    def stop_all(signum: int, _frame: object = None) -> None:
        stopping.set()  # first: a worker that still ignores signals looks here
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    release_stop_signals()  # held since main(); a signal that came meanwhile is handled now
    with metrics_server(settings.http_host, settings.metrics_port):  # a thread: after forking
        _wait_for_workers(workers, stopping, stop_all)
    codes = {worker.name: worker.exitcode for worker in workers}
    if STARTUP_FAILED in codes.values():
        return STARTUP_FAILED
    failed = [f"{name} (exit code {code})" for name, code in codes.items() if code != 0]
    if failed:
        log.error("workers %s stopped with an error", ", ".join(failed))
        return 1
    return 0


def _wait_for_workers(workers: list[Any], stopping: Any, stop_all: Callable[[int], None]) -> None:
    running = list(workers)
    while running:
        ended = multiprocessing.connection.wait([worker.sentinel for worker in running])
        for worker in [worker for worker in running if worker.sentinel in ended]:
            worker.join()
            running.remove(worker)
            process_exited(worker.pid)
            if worker.exitcode != 0 and not stopping.is_set():
                stop_all(signal.SIGTERM)  # one worker failed: the instance stops


async def migrate(settings: Settings) -> None:
    """Brings the schema of the configured database up to date."""
    url = settings.effective_database_url
    database = _database(url)
    async with _database_errors(database, url):
        await upgrade_to_head(database)
    await database.dispose()
