"""CPU per call of the hot reads' own work, in process: the servicers' GetAssignment and
ListSegments (the segments of a customer, 5 of 20) on PostgreSQL, without gRPC around them,
and the same number of bare asyncpg fetchrow calls beside them (the driver's share).

It measures whichever build is imported: run it with PYTHONPATH=<other build>/src to compare
builds, in turns. Figures: process CPU time over the calls, the median of --rounds runs.

Usage: .venv/bin/python bench/reads_in_process.py DATABASE_URL [--calls N] [--rounds N]
DATABASE_URL: a database this script may fill (tenant "inproc"; made if absent).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg
from customersegment.v1 import assignment_pb2, segment_pb2

from customer_segments.domain.errors import AlreadyExists
from customer_segments.domain.principal import Principal
from customer_segments.domain.segment import SegmentInput, SegmentStatus
from customer_segments.grpc.assignment_servicer import CustomerAssignmentServicer
from customer_segments.grpc.auth_interceptor import _caller
from customer_segments.grpc.segment_servicer import SegmentServicer
from customer_segments.services import assignments, segments
from customer_segments.store.database import Database
from customer_segments.store.migrate import upgrade_to_head
from customer_segments.store.store import Store

TENANT = "inproc"
CUSTOMER = "cust-1"
PRINCIPAL = Principal(
    tenant=TENANT,
    scopes=frozenset({"customersegment.segment_read", "customersegment.segment_manage"}),
    subject=None,
    legal_entity_id=None,
)


async def fill(store: Store) -> None:
    for n in range(20):
        segment = SegmentInput(
            name={"en": f"Segment {n}"},
            description={},
            validity_from=None,
            validity_to=None,
            status=SegmentStatus.ACTIVE if n % 2 else SegmentStatus.INACTIVE,
            site_code="main",
            mixins_json="",
            metadata_mixins_json="",
        )
        try:
            await segments.create_segment(store, PRINCIPAL, TENANT, f"seg-{n:02d}", segment)
        except AlreadyExists:
            return
        if n < 5:
            await assignments.upsert_assignment(store, PRINCIPAL, TENANT, f"seg-{n:02d}", CUSTOMER)


async def per_call(calls: int, call: Any) -> float:
    await call()
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    database = Database(arguments.database_url)
    await upgrade_to_head(database)
    store = Store(database)
    await fill(store)
    _caller.set(PRINCIPAL)
    context: Any = None
    segment_servicer = SegmentServicer(store)
    assignment_servicer = CustomerAssignmentServicer(store)
    list_request = segment_pb2.ListSegmentsRequest(tenant=TENANT, customer_id=CUSTOMER)
    get_request = assignment_pb2.GetAssignmentRequest(
        tenant=TENANT, segment_id="seg-00", customer_id=CUSTOMER
    )
    assert len((await segment_servicer.ListSegments(list_request, context)).segments) == 5
    url = arguments.database_url.replace("postgresql+asyncpg://", "postgresql://")
    driver = await asyncpg.connect(url)

    async def bare() -> None:
        await driver.fetchrow("select 1 as one")

    figures: dict[str, list[float]] = {"segments": [], "get": [], "fetchrow": []}
    for _ in range(arguments.rounds):
        figures["segments"].append(
            await per_call(
                arguments.calls, lambda: segment_servicer.ListSegments(list_request, context)
            )
        )
        figures["get"].append(
            await per_call(
                arguments.calls, lambda: assignment_servicer.GetAssignment(get_request, context)
            )
        )
        figures["fetchrow"].append(await per_call(arguments.calls, bare))
    await driver.close()
    await store.close()
    print(
        "CPU us per call (median, min-max): "
        + ", ".join(
            f"{name} {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"
            for name, values in figures.items()
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
