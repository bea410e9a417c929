"""Plumbing for the benchmark: free ports, child processes, h2load, PostgreSQL administration,
and the bearer token every call of the service needs.

Nothing here knows about customer segments but how to get a token; run.py tells the story.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from customer_segments.auth.tokens import issue_token

# Exactly the load of bench/ceiling/run.sh, so that service and ceiling are comparable.
H2LOAD_REQUESTS = 30_000
H2LOAD_ARGS = ("-n", str(H2LOAD_REQUESTS), "-c", "16", "-m", "10", "-t", "1")
H2LOAD_TIMEOUT_S = 300.0


# The service reads its HS256 secret from this variable (never from its command line).
JWT_SECRET_ENV = "CUSTOMER_SEGMENTS_JWT_SECRET"
# How a benchmark hands the token to its load generators (bulk_client.py, rest_bulk_client.py).
TOKEN_ENV = "BENCH_TOKEN"
TOKEN_SCOPES = ("customersegment.segment_read", "customersegment.segment_manage")
TOKEN_TTL_S = 4 * 3600  # longer than any run


class BenchError(Exception):
    """Something went wrong that makes the figures meaningless: the run stops."""


@dataclass(frozen=True)
class Credentials:
    """A shared secret made for this run, for the servers, and a token it signs, for every
    client: one token for all calls, as an internal caller would reuse it."""

    secret: str
    token: str

    @classmethod
    def for_tenant(cls, tenant: str) -> Credentials:
        secret = secrets.token_urlsafe(32)  # 43 characters; the service needs at least 32
        token = issue_token(
            secret.encode(), tenant=tenant, scopes=TOKEN_SCOPES, ttl_seconds=TOKEN_TTL_S
        )
        return cls(secret, token)

    @property
    def authorization(self) -> str:
        """The value of the Authorization header (gRPC metadata key `authorization`)."""
        return f"Bearer {self.token}"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """For the `metadata=` of a gRPC stub call."""
        return (("authorization", self.authorization),)

    def server_env(self) -> dict[str, str]:
        return {JWT_SECRET_ENV: self.secret}

    def client_env(self) -> dict[str, str]:
        return {TOKEN_ENV: self.token}


def token_from_env() -> str:
    """The token a load generator was started with (Credentials.client_env)."""
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise BenchError(f"no bearer token: set {TOKEN_ENV}")
    return token


@dataclass(frozen=True)
class CpuUse:
    """How busy the CPUs were over an interval, in cores (1.0 = one core all the time)."""

    process: float  # the watched process (threads included)
    machine: float  # everything on the machine: PostgreSQL, load generator, server, ...
    client: float | None = None  # the load generator alone, when it reports its own use


@dataclass(frozen=True)
class CpuSample:
    """CPU time counters at one moment (Linux /proc), to compare with a later sample."""

    process_s: float
    machine_busy_s: float
    wall_s: float

    @classmethod
    def take(cls, pid: int) -> CpuSample:
        """`pid` and its descendants (the worker processes of `serve --workers N`)."""
        ticks = os.sysconf("SC_CLK_TCK")
        process = sum(_process_ticks(member) for member in _process_tree(pid)) / ticks
        # first line of /proc/stat: "cpu user nice system idle iowait irq softirq steal ..."
        counters = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
        busy = sum(counters) - counters[3] - counters[4]
        return cls(process, busy / ticks, time.perf_counter())

    def until(self, later: CpuSample) -> CpuUse:
        wall = later.wall_s - self.wall_s
        return CpuUse(
            (later.process_s - self.process_s) / wall,
            (later.machine_busy_s - self.machine_busy_s) / wall,
        )


def _process_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # it ended in the meantime
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _process_tree(pid: int) -> list[int]:
    tree, index = [pid], 0
    while index < len(tree):
        children = Path(f"/proc/{tree[index]}/task/{tree[index]}/children")
        with contextlib.suppress(FileNotFoundError):  # it ended in the meantime
            tree += [int(child) for child in children.read_text().split()]
        index += 1
    return tree


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed): what h2load sends as the body."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


class Child:
    """A long-running child process (a server); its output goes to `<log_dir>/<name>.log`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the graceful stop), then SIGKILL if it takes longer than `timeout`."""
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def wait_until(ready: Callable[[], bool], what: str, child: Child, timeout: float = 30.0) -> None:
    """Polls `ready` until it holds; fails early, with the child's log, if the child dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"{child.name} exited while waiting for {what}:\n{child.tail()}")
        if ready():
            return
        time.sleep(0.1)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}:\n{child.tail()}")


def run_command(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> str:
    """Runs a command to completion and returns its stdout; fails with its output otherwise."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    if done.returncode != 0:
        raise BenchError(
            f"exit status {done.returncode}: {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def require_tool(name: str, debian_package: str) -> str:
    """The path of a load generator, or a BenchError that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} not found; install it: apt-get install {debian_package}")
    return path


def require_h2load() -> str:
    return require_tool("h2load", "nghttp2-client")


@dataclass(frozen=True)
class H2loadResult:
    requests_per_second: float
    requests: int
    succeeded: int
    status_2xx: int
    data_bytes: int  # DATA frame payload received: gRPC frames of the responses

    def problems(self, response_message_bytes: int) -> list[str]:
        """What shows that not every call got the expected response.

        h2load cannot see the grpc-status trailer, but a failed call carries no message, so the
        DATA bytes must be exactly one framed response message per request.
        """
        found = []
        if self.succeeded != self.requests:
            found.append(f"{self.requests - self.succeeded} of {self.requests} requests failed")
        if self.status_2xx != self.requests:
            found.append(f"only {self.status_2xx} of {self.requests} had HTTP status 2xx")
        expected = self.requests * (5 + response_message_bytes)
        if self.data_bytes != expected:
            found.append(
                f"{self.data_bytes} response bytes instead of {expected} "
                f"({self.requests} x 5+{response_message_bytes}): some calls returned no message"
            )
        return found


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise BenchError(f"unexpected h2load output (no {pattern!r}):\n{text}")
    return float(match.group(1))


def h2load(url: str, body: Path, authorization: str | None = None) -> H2loadResult:
    """Unary gRPC calls over h2c, the way bench/ceiling/run.sh drives its servers; with
    `authorization`, each call carries it (the service's calls; the ceilings take none)."""
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    if authorization is not None:
        headers += ["-H", f"authorization: {authorization}"]
    output = run_command(
        [require_h2load(), *H2LOAD_ARGS, "-d", str(body), *headers, url],
        timeout=H2LOAD_TIMEOUT_S,
    )
    return H2loadResult(
        requests_per_second=_number(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", output),
        requests=int(_number(r"requests: (\d+) total", output)),
        succeeded=int(_number(r"(\d+) succeeded", output)),
        status_2xx=int(_number(r"status codes: (\d+) 2xx", output)),
        data_bytes=int(_number(r"\((\d+)\) data", output)),
    )


def with_database(url: str, database: str) -> str:
    """The same server URL, pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def run_sql(url: str, sql: str) -> str:
    """Executes SQL (one or more statements, no parameters); returns the last status tag."""

    async def go() -> str:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            status: str = await connection.execute(sql, timeout=300)
            return status
        finally:
            await connection.close()

    try:
        return asyncio.run(go())
    except (OSError, asyncpg.PostgresError) as error:
        raise BenchError(f"PostgreSQL at {url}: {error}") from None


def fetch_value(url: str, sql: str) -> str:
    async def go() -> str:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            return str(await connection.fetchval(sql))
        finally:
            await connection.close()

    return asyncio.run(go())


def bench_arguments(
    description: str, preload: int, bulk_rows: int, rounds_help: str
) -> tuple[argparse.ArgumentParser, argparse.Namespace, list[int]]:
    """The options both benchmarks take; also the `--workers` counts, parsed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preload", type=int, default=preload, help="assignments to preload")
    parser.add_argument("--bulk-rows", type=int, default=bulk_rows, help="rows per bulk phase")
    parser.add_argument("--rounds", type=int, default=1, help=rounds_help)
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated `serve --workers` counts to measure the service with",
    )
    arguments = parser.parse_args()
    if min(arguments.rounds, arguments.preload, arguments.bulk_rows) < 1:
        parser.error("--rounds, --preload and --bulk-rows must be at least 1")
    try:
        worker_counts = [int(count) for count in arguments.workers.split(",")]
    except ValueError:
        parser.error("--workers takes comma-separated whole numbers, e.g. 1,2")
    return parser, arguments, worker_counts
