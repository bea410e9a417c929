"""CPU per call of GetAssignment's access line and metrics, in process: the interceptor's own
calls for one call (access_line; the method's counters and histogram, the token counter and one
statement's duration, as a GetAssignment on PostgreSQL makes them), on an event loop, with the
JSON lines written to /dev/null in their batches (the formatting at flush is counted).

It measures whichever build is imported: run it with PYTHONPATH=<other build>/src to compare
builds, in turns. Warm figures: a server interleaves these with the rest of each call, and
there they cost more (bench/observability.py). Process CPU time over the calls, the median of
--rounds runs.

Usage: .venv/bin/python bench/observability_in_process.py {access,metrics} [--calls N]
[--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import statistics
import sys
import tempfile
import time

# Before prometheus_client is imported: its multiprocess mode, as a server with metrics on.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="obs-in-process-")

import grpc

from customer_segments.grpc.access_log_interceptor import access_line
from customer_segments.grpc.metrics_interceptor import MethodMetrics
from customer_segments.logs import configure_logging, request_id
from customer_segments.metrics import instruments

METHOD = "/customersegment.v1.CustomerAssignmentService/GetAssignment"


class Context:
    """What access_line and the metrics ask of a call's context."""

    def code(self) -> None:
        return None  # OK

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50123"


async def per_call(part: str, calls: int) -> float:
    """µs of process CPU per call."""
    metrics = instruments()
    assert metrics is not None
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: None)
    method = MethodMetrics.of(metrics, METHOD, handler)
    query = metrics.query_duration.labels("SELECT")
    try:  # the build's own way of observing a statement's duration
        from customer_segments.metrics.direct import DirectHistogram

        observe = DirectHistogram(query).observe
    except ImportError:
        observe = query.observe
    context: object = Context()
    takes_peer = "peer" in inspect.signature(access_line).parameters
    request_id.set(os.urandom(16).hex())
    started = time.process_time()
    for number in range(calls):
        began = time.perf_counter()
        if part == "access":
            if takes_peer:  # since the peer is taken as the call starts
                access_line(METHOD, context, None, began, context.peer())  # type: ignore[arg-type,attr-defined]
            else:
                access_line(METHOD, context, None, began)  # type: ignore[arg-type,call-arg]
        else:
            method.start(None, False)
            metrics.token_accepted.inc()
            observe(0.0004)
            method.sent.inc()
            method.ended(context, None, began)  # type: ignore[arg-type]
        if number % 50 == 0:  # as calls end on a server: the loop runs between them
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    for each in logging.getLogger().handlers:
        each.flush()
    return (time.process_time() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("access", "metrics"))
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the lines' stream, to the end)
    configure_logging("INFO", "json", process="worker")
    figures = [
        asyncio.run(per_call(arguments.part, arguments.calls)) for _ in range(arguments.rounds)
    ]
    rounds = ", ".join(f"{figure:.1f}" for figure in figures)
    print(f"{arguments.part}: {statistics.median(figures):.1f} µs per call (rounds {rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
