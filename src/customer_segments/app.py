"""Wiring: settings -> database -> store -> servers, and the order they stop in."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile

from customer_segments.auth.setup import shared_secret, token_verifier
from customer_segments.config import Settings
from customer_segments.gateway.process import GatewayOptions, start_gateway_process
from customer_segments.grpc.server import start_grpc_server
from customer_segments.logs import configure_logging
from customer_segments.shutdown import stop_requested
from customer_segments.store.database import Database
from customer_segments.store.migrate import require_current_schema, upgrade_to_head
from customer_segments.store.store import Store

log = logging.getLogger(__name__)


async def open_store(settings: Settings, *, migrate_embedded: bool = True) -> Store:
    """The embedded database (its folder must exist) is migrated on start; PostgreSQL must be
    migrated beforehand."""
    database = Database(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        read_pool_size=settings.db_read_pool_size,
        expensive_read_pool_size=settings.db_expensive_read_pool_size,
        statement_cache_size=settings.pg_statement_cache_size,
    )
    try:
        if settings.embedded and migrate_embedded:
            await upgrade_to_head(database)
        else:
            await require_current_schema(database)
    except BaseException:
        await database.dispose()
        raise
    return Store(database)


async def serve(settings: Settings, *, migrate_embedded: bool = True) -> None:
    stop = stop_requested()
    store = await open_store(settings, migrate_embedded=migrate_embedded)
    # The gateway calls this process's own gRPC server, through the stubs like any client,
    # from a process of its own (see gateway/process.py) and on a Unix socket: cheaper than
    # TCP, and with --workers each worker's gateway reaches its own server rather than
    # whichever one the kernel picks.
    socket_dir = tempfile.mkdtemp(prefix="customer-segments-")
    local_socket = os.path.join(socket_dir, "grpc.sock")
    try:
        share_port = settings.workers > 1
        grpc_server = await start_grpc_server(
            store,
            settings.grpc_host,
            settings.grpc_port,
            verifier=token_verifier(settings),
            share_port=share_port,
            local_socket=local_socket,
        )
        try:
            gateway = await start_gateway_process(
                GatewayOptions(
                    f"unix:{local_socket}",
                    settings.http_host,
                    settings.http_port,
                    settings.shutdown_grace_seconds,
                    share_port,
                    settings.log_level,
                ),
                stop,
            )
        except BaseException:
            await grpc_server.stop(0)
            raise
        await stop.wait()
        if gateway.died:
            log.error("the REST gateway process died; stopping")
        log.info(
            "stopping: REST requests drain, then health NOT_SERVING and in-flight gRPC calls "
            "get %ss",
            settings.shutdown_grace_seconds,
        )
        await gateway.stop(settings.shutdown_grace_seconds)
        await grpc_server.stop(settings.shutdown_grace_seconds)
    finally:
        await store.close()
        shutil.rmtree(socket_dir, ignore_errors=True)
    if gateway.died:
        raise OSError("the REST gateway process died")
    log.info("stopped")


def _worker(settings: Settings) -> None:
    configure_logging(
        settings.log_level,
        f"%(asctime)s %(levelname)s [worker {os.getpid()}] %(name)s: %(message)s",
    )
    asyncio.run(serve(settings, migrate_embedded=False))


def serve_with_workers(settings: Settings) -> int:
    """Runs `settings.workers` processes that share the ports (SO_REUSEPORT); the kernel spreads
    connections over them. Migrates first, forwards SIGTERM/SIGINT, and returns 0 only if
    every worker stopped cleanly."""
    if settings.grpc_port == 0:
        raise ValueError("--workers needs a fixed --grpc-port: every worker must bind the same one")
    if settings.embedded:
        asyncio.run(migrate(settings))
    shared_secret(settings)  # the development secret, if any, exists before the workers read it
    # Spawned, not forked: a forked child would inherit gRPC's threads in an unknown state.
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(settings,), name=f"worker-{n}")
        for n in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()
    failed = [worker.name for worker in workers if worker.exitcode != 0]
    if failed:
        log.error("workers %s stopped with an error", ", ".join(failed))
    return 1 if failed else 0


async def migrate(settings: Settings) -> None:
    """Brings the schema of the configured database up to date."""
    database = Database(settings.effective_database_url)
    try:
        await upgrade_to_head(database)
    finally:
        await database.dispose()
