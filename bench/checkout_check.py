"""What checking a pooled PostgreSQL connection before use costs on the GetAssignment path.

A connection the server has closed (a restart) must not fail a call. SQLAlchemy's
pool_pre_ping sends a round trip at every checkout; the store instead looks at asyncpg's
is_closed() flag, set as soon as the closed socket is seen. This measures, in one process
on a database of its own (cs_checkout_<random>, dropped afterwards), the get_assignment use
case as the service runs it, without and with pool_pre_ping, alternated over --rounds, in
microseconds of wall and CPU time per call (sequential calls).

Usage: .venv/bin/python bench/checkout_check.py [--calls N] [--rounds N]; PostgreSQL from
env PGURL (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time

from harness import run_sql, with_database
from run import DEFAULT_PGURL

from customer_segments.domain.assignment import AssignmentKey
from customer_segments.domain.principal import Principal, Scope
from customer_segments.domain.segment import SegmentInput
from customer_segments.services.assignments import get_assignment, upsert_assignment
from customer_segments.services.segments import create_segment
from customer_segments.store.database import Database
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store

ADMIN = Principal("bench", frozenset(scope.value for scope in Scope))


async def per_call(store: Store, key: AssignmentKey, calls: int) -> tuple[float, float]:
    for _ in range(200):  # warm-up: statements prepared, connections made
        await get_assignment(store, ADMIN, *key)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await get_assignment(store, ADMIN, *key)
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


async def measure(url: str, calls: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    key = AssignmentKey("bench", "seg", "cust-1", "")
    setup = Database(url)
    await upgrade_to_head(setup)
    store = Store(setup)
    segment = SegmentInput(
        name={"en": "S"},
        description={},
        validity_from=None,
        validity_to=None,
        status=None,
        site_code="main",
        mixins_json="{}",
        metadata_mixins_json="{}",
    )
    await create_segment(store, ADMIN, "bench", "seg", segment)
    await upsert_assignment(store, ADMIN, *key, mixins_json="{}", metadata_mixins_json="{}")
    await store.close()
    figures: dict[str, list[tuple[float, float]]] = {"is_closed() flag": [], "pool_pre_ping": []}
    for _ in range(rounds):
        for label in figures:
            database = Database(url)
            if label == "pool_pre_ping":
                database._reader.sync_engine.pool._pre_ping = True  # as pool_pre_ping=True sets
            store = Store(database)
            figures[label].append(await per_call(store, key, calls))
            await store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    name = f"cs_checkout_{secrets.token_hex(4)}"
    run_sql(pg_url, f'create database "{name}"')
    try:
        figures = asyncio.run(
            measure(with_database(pg_url, name), arguments.calls, arguments.rounds)
        )
    finally:
        run_sql(pg_url, f'drop database if exists "{name}" with (force)')
    for label, runs in figures.items():
        wall = statistics.median(run[0] for run in runs)
        cpu = statistics.median(run[1] for run in runs)
        print(f"{label}: {wall:.0f} us wall, {cpu:.0f} us CPU per get_assignment (medians)")


if __name__ == "__main__":
    main()
