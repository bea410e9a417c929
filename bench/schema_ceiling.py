"""The bulk ceiling on the service's own schema: the service's multi-row upsert statement,
driven straight through asyncpg like bulk_ceiling.py (250 batches of 200 rows, 4 connections,
inserts then updates), without gRPC or the service's Python.

With change events on (the service's default), each batch is what the service writes per
chunk: in one transaction, the upsert that also answers the directory's names, the tenant's
event counter upsert (with its pg_notify) and one INSERT of the batch's 200 events. `--no-events`
measures the upsert alone, in autocommit, as the service writes a chunk with --no-events.

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
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from customer_segments.store.assignments import (
    _UPSERT_MANY_POSTGRESQL,
    _UPSERT_MANY_WRITTEN_POSTGRESQL,
)
from customer_segments.store.events import _APPEND_POSTGRESQL, CHANNEL

TENANT, SEGMENT_ID = "schemaceil", "seg-schema-ceiling"
MIXINS = json.dumps({"segmentAttributes": {"membershipStatus": "PREMIUM"}})
BATCHES, ROWS, WORKERS = 250, 200, 4
EVENT_TYPE = "customer-segment.customer-assignment-created"


def _payload(customer_id: str, now: datetime) -> str:
    """An assignment event's payload, as large as the service's."""
    moment = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps(
        {
            "tenant": TENANT,
            "segmentId": SEGMENT_ID,
            "assignmentType": "MANUAL",
            "customer": {"id": customer_id},
            "metadata": {"createdAt": moment, "modifiedAt": moment, "version": 1},
            "mixins": json.loads(MIXINS),
        }
    )


async def measure(url: str, *, events: bool = True) -> dict[str, float]:
    statement = _UPSERT_MANY_WRITTEN_POSTGRESQL if events else _UPSERT_MANY_POSTGRESQL
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
    batches = [
        {
            "tenant": TENANT,
            "segment_id": SEGMENT_ID,
            "assignment_type": "MANUAL",
            "now": datetime.now(UTC),
            "customer_ids": [f"c{batch}-{row}" for row in range(ROWS)],
            "legal_entity_ids": [""] * ROWS,
            "mixins": [MIXINS] * ROWS,
            "metadata_mixins": ["{}"] * ROWS,
        }
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
                        if not events:
                            await connection.fetch(sql, *(parameters[name] for name in order))
                            continue
                        async with connection.transaction():
                            await write_chunk(connection, sql, order, parameters)

            started = time.perf_counter()
            await asyncio.gather(*(worker(queue) for _ in range(WORKERS)))
            figures[phase] = BATCHES * ROWS / (time.perf_counter() - started)
    finally:
        await pool.close()
    return figures


_APPEND = _APPEND_POSTGRESQL.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]


async def write_chunk(
    connection: asyncpg.Connection, sql: str, order: list[str], parameters: dict[str, object]
) -> None:
    """A chunk as the service writes it with events: the upsert, then the outbox rows last
    (the service's own statement: the counter, its pg_notify and the INSERT in one)."""
    now = datetime.now(UTC)
    await connection.fetch(sql, *(parameters[name] for name in order))
    customer_ids: list[str] = parameters["customer_ids"]  # type: ignore[assignment]
    appended: dict[str, object] = {
        "tenant": TENANT,
        "count": len(customer_ids),
        "channel": CHANNEL,
        "occurred_at": now,
        "ids": [str(uuid.uuid4()) for _ in customer_ids],
        "types": [EVENT_TYPE] * len(customer_ids),
        "segment_ids": [SEGMENT_ID] * len(customer_ids),
        "payloads": [_payload(customer_id, now) for customer_id in customer_ids],
    }
    await connection.fetch(str(_APPEND), *(appended[name] for name in _APPEND.positiontup or []))


if __name__ == "__main__":
    with_events = "--no-events" not in sys.argv[2:]
    for phase, rows_per_second in asyncio.run(measure(sys.argv[1], events=with_events)).items():
        print(f"{phase}: {rows_per_second:.0f} rows/s")
