"""Load generator for the REST bulk upsert, `PUT .../customers/bulk`, the REST twin of
bulk_client.py, run as its own process so that its CPU time is not counted inside the server's.

It serializes every body before the clock starts (ITEMS_PER_BODY items each, 200 being the
documented cap), deals them out to CLIENTS aiohttp sessions of one connection each, and each
session sends its share one body after the other; once per phase (the phases reuse the same
keys: "insert" creates them, "update" replaces them). The 207 answers are kept as bytes while the
clock runs and checked afterwards, so that the figure is the server's, not this client's JSON
decoding. It prints the same JSON list as bulk_client.py: per phase the elapsed seconds, the
result codes received, whatever was wrong with the answers, and how busy the CPUs were. Every
request carries the bearer token of env BENCH_TOKEN (made by the benchmark, harness.Credentials).

    BENCH_TOKEN=<jwt> python bench/rest_bulk_client.py --base-url http://127.0.0.1:8080 \
        --tenant bench --segment-id s1 --rows 40000 --items-per-body 200 --clients 4 --key-prefix k-
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

import aiohttp
from bulk_client import MIXINS_JSON, CallOutcome, PhaseResult
from harness import BenchError, CpuSample, token_from_env

CALL_TIMEOUT_S = 600.0
HEADERS = {"Content-Type": "application/json"}


def build_bodies(key_prefix: str, rows: int, per_body: int) -> list[bytes]:
    """The request bodies, as the bytes that go on the wire; the mixins are bulk_client.py's."""
    mixins = json.loads(MIXINS_JSON)
    bodies = []
    for start in range(0, rows, per_body):
        items = [
            {"customerId": f"{key_prefix}{n}", "mixins": mixins}
            for n in range(start + 1, min(start + per_body, rows) + 1)
        ]
        bodies.append(json.dumps(items).encode())
    return bodies


def check_answer(status: int, payload: bytes, items: int) -> CallOutcome:
    """A 207 whose array answers each of the body's items exactly once (indexes 1..items)."""
    if status != 207:
        text = payload[:300].decode(errors="replace")
        return CallOutcome(Counter(), [f"HTTP status {status} instead of 207: {text}"])
    results: list[dict[str, Any]] = json.loads(payload)
    codes = Counter(int(result["code"]) for result in results)
    problems = []
    if sorted(result["index"] for result in results) != list(range(1, items + 1)):
        problems.append(f"a body of {items} items got {len(results)} results, or bad indexes")
    failures = [result for result in results if result["code"] >= 400]
    if failures:
        first = failures[0]
        problems.append(
            f"{len(failures)} failed items, e.g. #{first['index']}: {first['code']} "
            f"{first.get('message', '')}"
        )
    return CallOutcome(codes, problems)


async def send_share(
    session: aiohttp.ClientSession, share: Sequence[bytes], url: str, headers: dict[str, str]
) -> list[tuple[int, bytes]]:
    """One client: its bodies one after the other; the answers unread but for their bytes."""
    answers = []
    for body in share:
        async with session.put(url, data=body, headers=headers) as response:
            answers.append((response.status, await response.read()))
    return answers


async def run(arguments: argparse.Namespace) -> list[PhaseResult]:
    headers = {**HEADERS, "Authorization": f"Bearer {token_from_env()}"}
    bodies = build_bodies(arguments.key_prefix, arguments.rows, arguments.items_per_body)
    sizes = [len(json.loads(body)) for body in bodies]
    shares = [bodies[i :: arguments.clients] for i in range(arguments.clients)]
    share_sizes = [sizes[i :: arguments.clients] for i in range(arguments.clients)]
    url = (
        f"{arguments.base_url}/customer-segment/{arguments.tenant}/segments/"
        f"{arguments.segment_id}/customers/bulk"
    )
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    # One connection per client, as separate importers would have; it also lets the kernel
    # spread them over server processes sharing the port (--workers).
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout)
        for _ in range(arguments.clients)
    ]
    phases = []
    try:
        for phase in arguments.phases.split(","):
            cpu_before = CpuSample.take(arguments.server_pid) if arguments.server_pid else None
            client_before = CpuSample.take(os.getpid())
            started = time.perf_counter()
            calls = map(partial(send_share, url=url, headers=headers), sessions, shares)
            answers = await asyncio.gather(*calls)
            seconds = time.perf_counter() - started
            cpu = cpu_before.until(CpuSample.take(arguments.server_pid)) if cpu_before else None
            client = client_before.until(CpuSample.take(os.getpid()))
            outcomes = [
                check_answer(status, payload, items)
                for client_answers, items_of in zip(answers, share_sizes, strict=True)
                for (status, payload), items in zip(client_answers, items_of, strict=True)
            ]
            phases.append(PhaseResult.of(phase, seconds, outcomes, cpu, client))
    finally:
        for session in sessions:
            await session.close()
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="http://host:port of the gateway")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--segment-id", required=True)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--items-per-body", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--key-prefix", default="rest-bulk-")
    parser.add_argument("--phases", default="insert,update", help="comma-separated labels")
    parser.add_argument("--server-pid", type=int, help="report this process's CPU use per phase")
    arguments = parser.parse_args()
    try:
        phases = asyncio.run(run(arguments))
    except (aiohttp.ClientError, TimeoutError) as error:
        sys.exit(f"rest_bulk_client: {type(error).__name__}: {error}")
    except BenchError as error:
        sys.exit(f"rest_bulk_client: {error}")
    print(json.dumps([asdict(phase) for phase in phases]))


if __name__ == "__main__":
    main()
