"""CPU per row of the bulk upserts' own work, in process: the servicer's BulkUpsertAssignments
(1000 items per request, 4 requests at once) on PostgreSQL, inserts then updates, without gRPC
around it, and the bare statements (the service's own, on asyncpg) beside it.

It measures whichever build is imported: run it with PYTHONPATH=<other build>/src to compare
builds, in turns. Figures: process CPU time over the rows, the median of --rounds runs;
--profile writes a cProfile of the servicer's rounds to that file.

Usage: .venv/bin/python bench/bulk_in_process.py DATABASE_URL [--rows N] [--rounds N]
DATABASE_URL: a database this script may fill (tenant "inproc"; made if absent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from customersegment.v1 import assignment_pb2
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from customer_segments.domain.errors import AlreadyExists
from customer_segments.domain.principal import Principal
from customer_segments.domain.segment import SegmentInput, SegmentStatus
from customer_segments.grpc.assignment_servicer import CustomerAssignmentServicer
from customer_segments.grpc.auth_interceptor import _caller
from customer_segments.services import segments
from customer_segments.store.assignments import (
    _UPSERT_MANY_ANNOUNCED_POSTGRESQL,
    chunk_parameters,
)
from customer_segments.store.database import Database
from customer_segments.store.events import CHANNEL
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store

TENANT, SEGMENT_ID = "inproc", "seg-bulk"
MIXINS_JSON = json.dumps({"segmentAttributes": {"membershipStatus": "PREMIUM"}})
PER_REQUEST, AT_ONCE, CHUNK = 1000, 4, 200
PRINCIPAL = Principal(
    tenant=TENANT,
    scopes=frozenset({"customersegment.segment_read", "customersegment.segment_manage"}),
    subject=None,
    legal_entity_id=None,
)


async def make_segment(store: Store) -> None:
    segment = SegmentInput(
        name={"en": "Bulk"},
        description={},
        validity_from=None,
        validity_to=None,
        status=SegmentStatus.ACTIVE,
        site_code="main",
        mixins_json="",
        metadata_mixins_json="",
    )
    with contextlib.suppress(AlreadyExists):
        await segments.create_segment(store, PRINCIPAL, TENANT, SEGMENT_ID, segment)


def requests(prefix: str, rows: int) -> list[assignment_pb2.BulkUpsertAssignmentsRequest]:
    return [
        assignment_pb2.BulkUpsertAssignmentsRequest(
            tenant=TENANT,
            segment_id=SEGMENT_ID,
            items=[
                assignment_pb2.BulkUpsertItem(customer_id=f"{prefix}{n}", mixins_json=MIXINS_JSON)
                for n in range(start, min(start + PER_REQUEST, rows))
            ],
        )
        for start in range(0, rows, PER_REQUEST)
    ]


async def servicer_cpu(
    servicer: CustomerAssignmentServicer,
    messages: list[assignment_pb2.BulkUpsertAssignmentsRequest],
    expected: int,
) -> float:
    queue = list(reversed(messages))

    async def worker() -> None:
        while queue:
            async for response in servicer.BulkUpsertAssignments(queue.pop(), None):  # type: ignore[arg-type]
                assert all(result.code == expected for result in response.results), response

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(AT_ONCE)))
    return (time.process_time() - started) / sum(len(m.items) for m in messages) * 1e6


async def bare_cpu(pool: asyncpg.Pool[Any], prefix: str, rows: int) -> float:
    compiled = _UPSERT_MANY_ANNOUNCED_POSTGRESQL.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    sql, order = str(compiled), list(compiled.positiontup or [])
    now = datetime.now(UTC)
    queue = [
        chunk_parameters(
            TENANT,
            SEGMENT_ID,
            now,
            [f"{prefix}{n}" for n in range(start, min(start + CHUNK, rows))],
            [""] * min(CHUNK, rows - start),
            [MIXINS_JSON] * min(CHUNK, rows - start),
            ["{}"] * min(CHUNK, rows - start),
        )
        | {"channel": CHANNEL}
        for start in range(0, rows, CHUNK)
    ]

    async def worker() -> None:
        while queue:
            parameters = queue.pop()
            async with pool.acquire() as connection:
                await connection.fetch(sql, *(parameters[name] for name in order))

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(AT_ONCE)))
    return (time.process_time() - started) / rows * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of the servicer's rounds here")
    arguments = parser.parse_args()
    database = Database(arguments.database_url)
    await upgrade_to_head(database)
    store = Store(database)
    await make_segment(store)
    _caller.set(PRINCIPAL)
    servicer = CustomerAssignmentServicer(store)
    url = arguments.database_url.replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(url, min_size=AT_ONCE, max_size=AT_ONCE)
    profile = cProfile.Profile(time.process_time) if arguments.profile else None
    run = time.time_ns()
    figures: dict[str, list[float]] = {}
    for number in range(arguments.rounds):
        prefix = f"r{run}-{number}-"
        messages = requests(prefix, arguments.rows)
        for phase, code in (("insert", 201), ("update", 204)):
            if profile:
                profile.enable()
            per_row = await servicer_cpu(servicer, messages, code)
            if profile:
                profile.disable()
            figures.setdefault(f"servicer {phase}", []).append(per_row)
        for phase in ("insert", "update"):
            per_row = await bare_cpu(pool, f"bare-{prefix}", arguments.rows)
            figures.setdefault(f"bare {phase}", []).append(per_row)
    await pool.close()
    await store.close()
    if profile and arguments.profile:
        profile.dump_stats(arguments.profile)
    print(
        "CPU us per row (median, min-max): "
        + ", ".join(
            f"{name} {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
            for name, values in figures.items()
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
