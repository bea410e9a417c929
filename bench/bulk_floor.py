"""How much of the bulk ceiling any gRPC service could reach: a bare gRPC bulk server beside the
bare statements and the service, in one run.

The hot-paths target for bulk (75% of the bare statements, bench/schema_ceiling.py) compares
the service with asyncpg alone. Between the two stand costs that no implementation of the
RPCs avoids on this machine: the client building and sending the items and reading one result
per item, gRPC decoding them in the server, the results encoded back, all on the same two
cores as PostgreSQL. The floor server pays exactly those and nothing else: a grpc.aio servicer
for BulkUpsertAssignments and StreamUpsertAssignments that writes each chunk of 200 items with
the service's own statement and parameters (change events included, as the service's default)
and answers 201/204 per item, writing the next chunk while the previous one's results go out
(as the service does), without a token check, validation or interceptors.

    python bench/bulk_floor.py [--rows 50000] [--rounds 1]

One round: the bare statements (asyncpg, 4 connections), then the floor server and the service
each driven by bench/bulk_client.py (4 calls at once; unary with 1,000 items per message,
stream with 200), each on a new database. The table gives each rate against the bare
statements, and the service's against the floor's: what the service's own code costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, common_pb2
from harness import BenchError, Child, Credentials, free_port, wait_until
from run import (
    DEFAULT_PGURL,
    PYTHON,
    SEGMENT_ID,
    TENANT,
    Log,
    create_segment,
    machine_busy_now,
    measure_bulk,
    measure_schema_ceiling,
    migrated_database,
    start_service,
    wait_until_serving,
)
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from customer_segments.event_loop import run as run_on_loop
from customer_segments.store.assignments import (
    _UPSERT_MANY_ANNOUNCED_POSTGRESQL,
    chunk_parameters,
)
from customer_segments.store.events import CHANNEL

CHUNK = 200  # the service's chunk (services/bulk_assignments.py CHUNK_SIZE)
POOL = 4  # connections, as the service's bulk writes and the bare statements use


class FloorServicer(assignment_pb2_grpc.CustomerAssignmentServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        compiled = _UPSERT_MANY_ANNOUNCED_POSTGRESQL.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql, self.order = str(compiled), list(compiled.positiontup or [])
        self.pool = pool

    async def _chunk(
        self, tenant: str, segment_id: str, items: Any, first_index: int
    ) -> list[common_pb2.BulkItemResult]:
        parameters = chunk_parameters(
            tenant,
            segment_id,
            datetime.now(UTC),
            [item.customer_id for item in items],
            [item.legal_entity_id for item in items],
            [item.mixins_json or "{}" for item in items],
            [item.metadata_mixins_json or "{}" for item in items],
        ) | {"channel": CHANNEL}
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(self.sql, *(parameters[name] for name in self.order))
        customer_ids, legal_entity_ids, versions = row
        return [
            common_pb2.BulkItemResult(
                index=first_index + offset,
                code=201 if version == 1 else 204,
                status="Created" if version == 1 else "No Content",
                customer_id=customer_id,
                legal_entity_id=legal_entity_id,
            )
            for offset, (customer_id, legal_entity_id, version) in enumerate(
                zip(customer_ids, legal_entity_ids, versions, strict=True)
            )
        ]

    async def _pipelined(
        self, chunks: AsyncIterator[tuple[str, str, Any, int]]
    ) -> AsyncIterator[list[common_pb2.BulkItemResult]]:
        """Each chunk's results, in order, with the next chunk written meanwhile (as the
        service reads ahead)."""
        pending: asyncio.Task[list[common_pb2.BulkItemResult]] | None = None
        async for tenant, segment_id, items, first_index in chunks:
            started = asyncio.create_task(self._chunk(tenant, segment_id, items, first_index))
            if pending is not None:
                yield await pending
            pending = started
        if pending is not None:
            yield await pending

    async def BulkUpsertAssignments(
        self, request: assignment_pb2.BulkUpsertAssignmentsRequest, context: Any
    ) -> AsyncIterator[assignment_pb2.BulkUpsertAssignmentsResponse]:
        async def chunks() -> AsyncIterator[tuple[str, str, Any, int]]:
            for start in range(0, len(request.items), CHUNK):
                yield (
                    request.tenant,
                    request.segment_id,
                    request.items[start : start + CHUNK],
                    start + 1,
                )

        async for results in self._pipelined(chunks()):
            yield assignment_pb2.BulkUpsertAssignmentsResponse(results=results)

    async def StreamUpsertAssignments(
        self,
        request_iterator: AsyncIterator[assignment_pb2.StreamUpsertAssignmentsRequest],
        context: Any,
    ) -> AsyncIterator[assignment_pb2.StreamUpsertAssignmentsResponse]:
        async def chunks() -> AsyncIterator[tuple[str, str, Any, int]]:
            tenant = segment_id = ""
            index = 1
            async for message in request_iterator:
                tenant, segment_id = message.tenant or tenant, message.segment_id or segment_id
                for start in range(0, len(message.items), CHUNK):
                    yield tenant, segment_id, message.items[start : start + CHUNK], index + start
                index += len(message.items)

        async for results in self._pipelined(chunks()):
            yield assignment_pb2.StreamUpsertAssignmentsResponse(results=results)


async def serve(database_url: str, port: int) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=POOL, max_size=POOL)
    server = grpc.aio.server()
    servicer = FloorServicer(pool)  # type: ignore[abstract]  # only the two bulk RPCs
    assignment_pb2_grpc.add_CustomerAssignmentServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


def start_floor(stack: ExitStack, log: Log, pg_url: str, work: Path) -> tuple[Child, int]:
    database_url = migrated_database(stack, pg_url, "cs_floor", log)
    asyncpg_url = database_url  # run.py's URLs are plain postgresql:// ones
    port = free_port()
    command = [PYTHON, __file__, "serve", "--database-url", asyncpg_url, "--port", str(port)]
    server = Child("bulk-floor", command, work, {})
    stack.callback(server.stop)

    def up() -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
            except grpc.FutureTimeoutError:
                return False
        return True

    wait_until(up, "the floor server listening", server, timeout=60)
    asyncio.run(_insert_segment(asyncpg_url))
    return server, port


async def _insert_segment(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:  # as bench/schema_ceiling.py does: the foreign key needs the segment
        await connection.execute(
            "INSERT INTO segments VALUES ($1, $2, '{}', '{}', NULL, NULL, 'ACTIVE', 'main', "
            "'{}', '{}', 1, now(), now()) ON CONFLICT DO NOTHING",
            TENANT,
            SEGMENT_ID,
        )
    finally:
        await connection.close()


def drive(
    log: Log, server: Child, port: int, credentials: Credentials, rows: int, name: str
) -> dict[str, float]:
    """rows/s of each RPC and phase: `unary insert`, ..., `stream update`."""
    figures: dict[str, float] = {}
    for rpc, per_message in (("bulk", 1000), ("stream", 200)):
        label = "unary" if rpc == "bulk" else "stream"
        phases = measure_bulk(
            log,
            server,
            port,
            credentials,
            f"{name} {label}",
            rpc=rpc,
            rows=rows,
            items_per_message=per_message,
            key_prefix=f"{label}-",
        )
        for phase, figure in zip(("insert", "update"), phases, strict=True):
            figures[f"{label} {phase}"] = figure.per_second
    return figures


def table(
    ceiling: list[dict[str, float]], floor: list[dict[str, float]], service: list[dict[str, float]]
) -> Iterable[str]:
    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    yield (
        "| path | bare statements | floor server | service | floor / bare | service / bare "
        "| service / floor |"
    )
    yield "|---|---|---|---|---|---|---|"
    for key in floor[0]:
        bare = median(ceiling, key.split()[1])
        lowest, ours = median(floor, key), median(service, key)
        yield (
            f"| {key} | {bare:,.0f} | {lowest:,.0f} | {ours:,.0f} | {lowest / bare:.0%} "
            f"| {ours / bare:.0%} | {ours / lowest:.0%} |"
        )


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("serve")
        parser.add_argument("--database-url", required=True)
        parser.add_argument("--port", type=int, required=True)
        arguments = parser.parse_args()
        run_on_loop(serve(arguments.database_url, arguments.port), "uvloop")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows per phase")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the medians count")
    arguments = parser.parse_args()
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    credentials = Credentials.for_tenant(TENANT)
    busy_before = machine_busy_now()
    ceiling: list[dict[str, float]] = []
    floor: list[dict[str, float]] = []
    service: list[dict[str, float]] = []
    try:
        for round_number in range(1, arguments.rounds + 1):
            log.step(f"round {round_number} of {arguments.rounds}")
            with tempfile.TemporaryDirectory(prefix="cs-floor-") as directory, ExitStack() as stack:
                work = Path(directory)
                insert, update = measure_schema_ceiling(log, pg_url)
                ceiling.append({"insert": insert.per_second, "update": update.per_second})
                floor_server, floor_port = start_floor(stack, log, pg_url, work)
                floor.append(
                    drive(log, floor_server, floor_port, credentials, arguments.rows, "floor")
                )
                floor_server.stop()
                started = start_service(stack, log, pg_url, "cs_floor_svc", work, 1, credentials)
                wait_until_serving(started.server, started.grpc_port)
                with grpc.insecure_channel(f"127.0.0.1:{started.grpc_port}") as channel:
                    create_segment(channel, credentials)
                service.append(
                    drive(
                        log,
                        started.server,
                        started.grpc_port,
                        credentials,
                        arguments.rows,
                        "service",
                    )
                )
    except BenchError as error:
        print(f"[bench] FAILED: {error}", file=sys.stderr)
        return 1
    print()
    print(f"Bulk floor: {arguments.rows:,} rows per phase, {arguments.rounds} round(s), medians;")
    print(f"machine busy before the run: {busy_before}")
    for line in table(ceiling, floor, service):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
