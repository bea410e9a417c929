"""Wiring: settings -> database -> store -> servers, and the order they stop in."""

from __future__ import annotations

import logging

from customer_segments.config import Settings
from customer_segments.grpc.server import start_grpc_server, stop_requested
from customer_segments.store.database import Database
from customer_segments.store.migrate import require_current_schema, upgrade_to_head
from customer_segments.store.store import Store

log = logging.getLogger(__name__)


async def open_store(settings: Settings) -> Store:
    """The embedded database (its folder must exist) is migrated on start; PostgreSQL must be
    migrated beforehand."""
    database = Database(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        statement_cache_size=settings.pg_statement_cache_size,
    )
    try:
        if settings.embedded:
            await upgrade_to_head(database)
        else:
            await require_current_schema(database)
    except BaseException:
        await database.dispose()
        raise
    return Store(database)


async def serve(settings: Settings) -> None:
    stop = stop_requested()
    store = await open_store(settings)
    try:
        grpc_server = await start_grpc_server(store, settings.grpc_host, settings.grpc_port)
        await stop.wait()
        log.info(
            "stopping: health NOT_SERVING, in-flight calls get %ss", settings.shutdown_grace_seconds
        )
        await grpc_server.stop(settings.shutdown_grace_seconds)
    finally:
        await store.close()
    log.info("stopped")
