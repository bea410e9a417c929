"""What callers can make a server process hold: its peak resident memory while concurrent
calls with large messages arrive, with and without a token.

Starts `customer-segments serve` (one worker, embedded SQLite, its own data folder), then, from
a separate process so that the client's memory is not counted, sends `--calls` concurrent
UpsertAssignment calls whose message is `--mb` MiB of mixins, and reports the server process's
VmHWM (peak RSS) before and after, and how the calls ended.

    .venv/bin/python bench/abuse.py                      # this checkout
    .venv/bin/python bench/abuse.py --source /tmp/old    # another checkout's src/ and generated/
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import free_port

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def client(target: str, calls: int, size_mb: float, token: str | None) -> None:
    """Runs in a process of its own; prints {status: count}."""
    import grpc
    from customersegment.v1 import assignment_pb2

    request = assignment_pb2.UpsertAssignmentRequest(
        tenant="acme",
        segment_id="gold",
        customer_id="c",
        mixins_json=json.dumps({"blob": "x" * int(size_mb * 1024 * 1024)}),
    ).SerializeToString()
    metadata = [("authorization", f"Bearer {token}")] if token else []

    async def run() -> None:
        options = [("grpc.max_send_message_length", -1)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            method = channel.unary_unary(
                "/customersegment.v1.CustomerAssignmentService/UpsertAssignment",
                request_serializer=None,
                response_deserializer=None,
            )

            async def one() -> str:
                try:
                    await method(request, metadata=metadata, timeout=120)
                    return "OK"
                except grpc.aio.AioRpcError as error:
                    return error.code().name

            outcomes = await asyncio.gather(*(one() for _ in range(calls)))
        print(json.dumps(collections.Counter(outcomes)))

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to run")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--mb", type=float, default=60.0)
    parser.add_argument("--token", action="store_true", help="calls carry a valid token")
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.client:
        target, calls, size, token = arguments.client
        client(target, int(calls), float(size), token if token != "-" else None)
        return
    environment = {
        **os.environ,
        "PYTHONPATH": f"{arguments.source / 'src'}:{arguments.source / 'generated'}",
    }
    port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "customer_segments.cli",
                "serve",
                "--metrics-port",
                "0",
                "--grpc-host",
                "127.0.0.1",
                "--grpc-port",
                str(port),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(http_port),
                "--data-dir",
                data,
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while socket.socket().connect_ex(("127.0.0.1", http_port)) != 0:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            token = "-"
            if arguments.token:
                token = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "customer_segments.cli",
                        "token",
                        "--data-dir",
                        data,
                        "--tenant",
                        "acme",
                        "--scope",
                        "customersegment.segment_manage",
                    ],
                    env=environment,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            before = peak_rss_mb(server.pid)
            started = time.monotonic()
            outcome = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    f"127.0.0.1:{port}",
                    str(arguments.calls),
                    str(arguments.mb),
                    token,
                ],
                capture_output=True,
                text=True,
                env=environment,
            )
            seconds = time.monotonic() - started
            print(
                f"{arguments.calls} calls x {arguments.mb:g} MiB, "
                f"{'with' if arguments.token else 'without'} a token, source {arguments.source}: "
                f"server peak RSS {before:.0f} MB before, {peak_rss_mb(server.pid):.0f} MB "
                f"after; outcomes {outcome.stdout.strip() or outcome.stderr[-500:]} "
                f"in {seconds:.1f} s"
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
