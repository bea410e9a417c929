"""Load generator for the bulk upsert RPCs, run as its own process so that its CPU time is not
counted inside the server's.

It builds every request before the clock starts, then sends ROWS B2C items over STREAMS
concurrent calls, once per phase (the phases reuse the same keys: "insert" creates them,
"update" replaces them). It prints a JSON list: per phase the elapsed seconds, the result
codes it received, whatever was wrong with the results, and how busy the CPUs were. Every call
carries the bearer token of env BENCH_TOKEN (made by the benchmark, harness.Credentials).

    BENCH_TOKEN=<jwt> python bench/bulk_client.py --target 127.0.0.1:50051 --tenant bench \
        --segment-id s1 --rpc bulk --rows 50000 --items-per-message 1000 --streams 4 --key-prefix k-
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import grpc
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc, common_pb2
from harness import BenchError, CpuSample, CpuUse, token_from_env

if TYPE_CHECKING:  # the async stub class exists only in the .pyi
    from customersegment.v1.assignment_pb2_grpc import CustomerAssignmentServiceAsyncStub as Stub

# The document the bulk ceiling writes in every row.
MIXINS_JSON = json.dumps({"segmentAttributes": {"membershipStatus": "PREMIUM"}})
CALL_TIMEOUT_S = 600.0

Metadata = tuple[tuple[str, str], ...]


@dataclass
class PhaseResult:
    phase: str
    rows: int
    seconds: float
    codes: dict[str, int]
    problems: list[str] = field(default_factory=list)
    # Cores busy during the phase: the server process (--server-pid) and the whole machine.
    server_cores: float | None = None
    machine_cores: float | None = None
    client_cores: float | None = None  # this load generator itself

    @classmethod
    def of(
        cls,
        phase: str,
        seconds: float,
        outcomes: Sequence[CallOutcome],
        server: CpuUse | None,
        client: CpuUse,
    ) -> PhaseResult:
        """What the calls of one phase answered, and the CPU it took."""
        codes: Counter[int] = Counter()
        for outcome in outcomes:
            codes.update(outcome.codes)
        problems = [problem for outcome in outcomes for problem in outcome.problems]
        return cls(
            phase=phase,
            rows=codes.total(),
            seconds=seconds,
            codes={str(code): count for code, count in sorted(codes.items())},
            problems=problems[:5],
            server_cores=server.process if server else None,
            machine_cores=server.machine if server else None,
            client_cores=client.process,
        )


@dataclass
class CallOutcome:
    codes: Counter[int]
    problems: list[str]


def check_call(results: Sequence[common_pb2.BulkItemResult], items: int) -> CallOutcome:
    """A call must answer each of its items exactly once (indexes 1..items)."""
    codes = Counter(result.code for result in results)
    problems = []
    indexes = sorted(result.index for result in results)
    if indexes != list(range(1, items + 1)):
        problems.append(f"a call sent {items} items but got {len(indexes)} results, or bad indexes")
    failures = [result for result in results if result.code >= 400]
    if failures:
        first = failures[0]
        problems.append(
            f"{len(failures)} failed items, e.g. #{first.index}: {first.code} {first.message}"
        )
    return CallOutcome(codes, problems)


def build_messages(
    tenant: str, segment_id: str, key_prefix: str, rows: int, per_message: int
) -> list[assignment_pb2.BulkUpsertAssignmentsRequest]:
    messages = []
    for start in range(0, rows, per_message):
        items = [
            assignment_pb2.BulkUpsertItem(customer_id=f"{key_prefix}{n}", mixins_json=MIXINS_JSON)
            for n in range(start + 1, min(start + per_message, rows) + 1)
        ]
        messages.append(
            assignment_pb2.BulkUpsertAssignmentsRequest(
                tenant=tenant, segment_id=segment_id, items=items
            )
        )
    return messages


async def unary_request_calls(
    stubs: Sequence[Stub],
    messages: Sequence[assignment_pb2.BulkUpsertAssignmentsRequest],
    metadata: Metadata,
) -> list[CallOutcome]:
    """BulkUpsertAssignments: `streams` workers take the next request until none is left."""
    queue: asyncio.Queue[assignment_pb2.BulkUpsertAssignmentsRequest] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)
    outcomes: list[CallOutcome] = []

    async def worker(stub: Stub) -> None:
        while not queue.empty():
            request = queue.get_nowait()
            results: list[common_pb2.BulkItemResult] = []
            calls = stub.BulkUpsertAssignments(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
            async for batch in calls:
                results.extend(batch.results)
            outcomes.append(check_call(results, len(request.items)))

    await asyncio.gather(*(worker(stub) for stub in stubs))
    return outcomes


def split_for_streams(
    messages: Sequence[assignment_pb2.BulkUpsertAssignmentsRequest], streams: int
) -> list[list[assignment_pb2.StreamUpsertAssignmentsRequest]]:
    """Message i goes to stream i % streams; only the first message of a stream names tenant
    and segment (the protocol lets later ones leave them empty)."""
    shares = [
        [
            assignment_pb2.StreamUpsertAssignmentsRequest(
                tenant=message.tenant if n == 0 else "",
                segment_id=message.segment_id if n == 0 else "",
                items=message.items,
            )
            for n, message in enumerate(messages[i::streams])
        ]
        for i in range(streams)
    ]
    return [share for share in shares if share]


async def streaming_calls(
    stubs: Sequence[Stub],
    shares: Sequence[list[assignment_pb2.StreamUpsertAssignmentsRequest]],
    metadata: Metadata,
) -> list[CallOutcome]:
    """StreamUpsertAssignments: one call per share of the messages, all at once."""

    async def one_call(
        stub: Stub, share: list[assignment_pb2.StreamUpsertAssignmentsRequest]
    ) -> CallOutcome:
        async def requests() -> AsyncIterator[assignment_pb2.StreamUpsertAssignmentsRequest]:
            for message in share:
                yield message

        results: list[common_pb2.BulkItemResult] = []
        call = stub.StreamUpsertAssignments(requests(), timeout=CALL_TIMEOUT_S, metadata=metadata)
        async for batch in call:
            results.extend(batch.results)
        return check_call(results, sum(len(message.items) for message in share))

    return list(await asyncio.gather(*(map(one_call, stubs, shares))))


async def run(arguments: argparse.Namespace) -> list[PhaseResult]:
    metadata = (("authorization", f"Bearer {token_from_env()}"),)
    messages = build_messages(
        arguments.tenant,
        arguments.segment_id,
        arguments.key_prefix,
        arguments.rows,
        arguments.items_per_message,
    )
    send: Callable[[Sequence[Stub]], Awaitable[list[CallOutcome]]]
    if arguments.rpc == "bulk":
        send = partial(unary_request_calls, messages=messages, metadata=metadata)
    else:
        shares = split_for_streams(messages, arguments.streams)
        send = partial(streaming_calls, shares=shares, metadata=metadata)
    phases = []
    # One channel (one HTTP/2 connection) per stream, as separate importers would have; it
    # also lets the kernel spread them over server processes sharing the port (--workers).
    # (Channels to one target share a TCP connection unless each has its own subchannel pool.)
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(arguments.target, options=options)
        for _ in range(arguments.streams)
    ]
    stubs = [assignment_pb2_grpc.CustomerAssignmentServiceStub(channel) for channel in channels]
    try:
        for phase in arguments.phases.split(","):
            cpu_before = CpuSample.take(arguments.server_pid) if arguments.server_pid else None
            client_before = CpuSample.take(os.getpid())
            started = time.perf_counter()
            outcomes = await send(stubs)
            seconds = time.perf_counter() - started
            cpu = cpu_before.until(CpuSample.take(arguments.server_pid)) if cpu_before else None
            client = client_before.until(CpuSample.take(os.getpid()))
            phases.append(PhaseResult.of(phase, seconds, outcomes, cpu, client))
    finally:
        for channel in channels:
            await channel.close(None)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the service")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--segment-id", required=True)
    parser.add_argument("--rpc", choices=["bulk", "stream"], required=True)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--items-per-message", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--key-prefix", default="bulk-")
    parser.add_argument("--phases", default="insert,update", help="comma-separated labels")
    parser.add_argument("--server-pid", type=int, help="report this process's CPU use per phase")
    arguments = parser.parse_args()
    try:
        phases = asyncio.run(run(arguments))
    except grpc.aio.AioRpcError as error:
        sys.exit(f"bulk_client: {error.code().name}: {error.details()}")
    except BenchError as error:
        sys.exit(f"bulk_client: {error}")
    print(json.dumps([asdict(phase) for phase in phases]))


if __name__ == "__main__":
    main()
