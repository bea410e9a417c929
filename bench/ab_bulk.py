"""Server CPU per row of the bulk upserts, A/B: two builds of the service served side by side on
one PostgreSQL database, measured in turns (the first of each round alternating), as
bench/ab_reads.py does for the reads; and, with --ceiling, the bare statements' rows/s
(bench/schema_ceiling.py) in each round beside the builds' own rows/s.

For each build and round: BulkUpsertAssignments (1000 items per request) and
StreamUpsertAssignments (200 per message), inserts then updates (bench/bulk_client.py, as
bench/hot_paths.py drives them), on keys of their own; the figure is the server's CPU time
(its process tree) over the rows written. Medians of the rounds.

Usage: .venv/bin/python bench/ab_bulk.py [--base-src DIR] [--rounds N] [--rows N] [--ceiling]
Env PGURL as bench/run.py. Extra serve flags of both builds: BENCH_SERVE_ARGS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import grpc
from harness import Credentials
from hot_paths import create_segments
from run import (
    DEFAULT_PGURL,
    TENANT,
    Log,
    measure_bulk,
    measure_schema_ceiling,
    start_service,
    wait_until_serving,
)

CALLS = {"bulk": 1000, "stream": 200}  # rpc: items per message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per phase")
    parser.add_argument("--rpcs", default="bulk,stream")
    parser.add_argument("--ceiling", action="store_true", help="the bare statements each round")
    arguments = parser.parse_args()
    pg_url = os.environ.get("PGURL", DEFAULT_PGURL)
    log = Log()
    credentials = Credentials.for_tenant(TENANT)
    # name -> "rpc phase" -> figures of the rounds
    cpu: dict[str, dict[str, list[float]]] = {}
    rates: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bulk-ab-") as directory, ExitStack() as stack:
        work = Path(directory)
        new = start_service(stack, log, pg_url, "bulk_ab", work, 1, credentials, name="new")
        wait_until_serving(new.server, new.grpc_port)
        with grpc.insecure_channel(f"127.0.0.1:{new.grpc_port}") as channel:
            create_segments(channel, credentials)
        services = {"new": new}
        for number, base_src in enumerate(arguments.base_src):
            name = f"old{number}"
            services[name] = start_service(
                stack,
                log,
                pg_url,
                "bulk_ab",
                work,
                1,
                credentials,
                new.database_url,
                name=name,
                env={"PYTHONPATH": str(base_src.resolve())},
            )
            wait_until_serving(services[name].server, services[name].grpc_port)
        names = list(services)
        for round_number in range(arguments.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                service = services[name]
                for rpc in arguments.rpcs.split(","):
                    figures = measure_bulk(
                        log,
                        service.server,
                        service.grpc_port,
                        credentials,
                        f"{name} {rpc}",
                        rpc=rpc,
                        rows=arguments.rows,
                        items_per_message=CALLS[rpc],
                        key_prefix=f"ab-{name}-{rpc}-{round_number}-",
                    )
                    for phase, figure in zip(("insert", "update"), figures, strict=True):
                        assert figure.cpu is not None
                        label = f"{rpc} {phase}"
                        per_row = figure.cpu.process / figure.per_second * 1e6
                        cpu.setdefault(name, {}).setdefault(label, []).append(per_row)
                        rates.setdefault(name, {}).setdefault(label, []).append(figure.per_second)
                print(name, {k: round(v[-1], 1) for k, v in cpu[name].items()}, flush=True)
            if arguments.ceiling:
                # On a database of its own, as hot_paths.py measures it: its keys are inserted
                # anew each time.
                bare = measure_schema_ceiling(log, pg_url)
                for phase, figure in zip(("insert", "update"), bare, strict=True):
                    for rpc in arguments.rpcs.split(","):
                        label = f"{rpc} {phase}"
                        rates.setdefault("bare", {}).setdefault(label, []).append(figure.per_second)
        print(f"\nserver CPU us per row, median of {arguments.rounds} rounds (min-max)")
        for name, measured in cpu.items():
            cells = ", ".join(
                f"{label} {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
                for label, v in measured.items()
            )
            print(f"  {name}: {cells}")
        print(
            "\nrows/s, median of the rounds"
            + (", and of the bare statements" * bool(arguments.ceiling))
        )
        for name, measured in rates.items():
            cells = ", ".join(
                f"{label} {statistics.median(v):,.0f}" for label, v in measured.items()
            )
            print(f"  {name}: {cells}")
        if arguments.ceiling:
            print("\nshare of the bare statements' rows/s, median of each round's share")
            for name in cpu:
                shares = {
                    label: [r / b for r, b in zip(v, rates["bare"][label], strict=True)]
                    for label, v in rates[name].items()
                }
                cells = ", ".join(f"{k} {statistics.median(v):.0%}" for k, v in shares.items())
                print(f"  {name}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
