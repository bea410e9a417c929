"""The bulk ceiling on the service's own schema: the service's multi-row upsert statement,
driven straight through asyncpg like bulk_ceiling.py (250 batches of 200 rows, 4 connections,
inserts then updates), without gRPC or the service's Python.

With change events on (the service's default), each batch is what the service writes per
chunk on PostgreSQL: one statement, in autocommit, that upserts the rows, bumps the tenant's
event counter (with its pg_notify) and appends the chunk's 200 change events as one
event_batches row.
`--no-events` measures the upsert alone, in autocommit, as the service writes a chunk with
--no-events.

The shared bulk ceiling writes a table with one index, no foreign key and one jsonb column;
the service's table also has the by-customer index, the foreign key to its segment and a
second jsonb column. This figure shows how much of the gap the schema alone explains.

    python bench/schema_ceiling.py postgresql://postgres@127.0.0.1:5432/<migrated db> [--no-events]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from customer_segments.store.assignments import (
    _UPSERT_MANY_ANNOUNCED_POSTGRESQL,
    _UPSERT_MANY_POSTGRESQL,
    chunk_parameters,
)
from customer_segments.store.events import CHANNEL

TENANT, SEGMENT_ID = "schemaceil", "seg-schema-ceiling"
MIXINS = json.dumps({"segmentAttributes": {"membershipStatus": "PREMIUM"}})
BATCHES, ROWS, WORKERS = 250, 200, 4


async def measure(url: str, *, events: bool = True) -> dict[str, float]:
    statement = _UPSERT_MANY_ANNOUNCED_POSTGRESQL if events else _UPSERT_MANY_POSTGRESQL
    # SQLAlchemy leaves the dialect constructor untyped.
    compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    sql, order = str(compiled), list(compiled.positiontup or [])
    setup = await asyncpg.connect(url)
    await setup.execute(
        "INSERT INTO segments VALUES ($1, $2, '{}', '{}', NULL, NULL, 'ACTIVE', 'main', '{}', "
        "'{}', 1, now(), now()) ON CONFLICT DO NOTHING",
        TENANT,
        SEGMENT_ID,
    )
    await setup.close()
    # The parameters as the service builds them for a chunk (the rows' columns joined).
    batches = [
        chunk_parameters(
            TENANT,
            SEGMENT_ID,
            datetime.now(UTC),
            [f"c{batch}-{row}" for row in range(ROWS)],
            [""] * ROWS,
            [MIXINS] * ROWS,
            ["{}"] * ROWS,
        )
        | {"channel": CHANNEL}
        for batch in range(BATCHES)
    ]
    pool = await asyncpg.create_pool(url, min_size=WORKERS, max_size=WORKERS)
    figures = {}
    try:
        for phase in ("insert", "update"):
            queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
            for batch in batches:
                queue.put_nowait(batch)

            async def worker(queue: asyncio.Queue[dict[str, object]]) -> None:
                while not queue.empty():
                    parameters = queue.get_nowait()
                    async with pool.acquire() as connection:
                        await connection.fetch(sql, *(parameters[name] for name in order))

            started = time.perf_counter()
            await asyncio.gather(*(worker(queue) for _ in range(WORKERS)))
            figures[phase] = BATCHES * ROWS / (time.perf_counter() - started)
    finally:
        await pool.close()
    return figures


if __name__ == "__main__":
    with_events = "--no-events" not in sys.argv[2:]
    for phase, rows_per_second in asyncio.run(measure(sys.argv[1], events=with_events)).items():
        print(f"{phase}: {rows_per_second:.0f} rows/s")
