"""Starting and stopping `customer-segments serve` as operators do: signals to the process
group, kill -9, a second instance on the same ports, and mistakes made at start."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import pytest
from customersegment.v1 import assignment_pb2, assignment_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import PG_ADMIN_URL, fresh_postgres_database, require_postgres
from tests.e2e.test_service_process import (
    ALL_SCOPES,
    CLI,
    NO_METRICS,
    START_TIMEOUT_S,
    free_port,
    logged_process,
    pre_migrated,
)
from tests.e2e.test_service_process import token as service_token

# Starts run this many at a time; each start is a few Python processes on a 2-core machine.
LANES = 6


class Instance:
    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        wrapper: tuple[str, ...] = (),
    ) -> None:
        self.port, self.http_port = free_port(), free_port()
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.process = logged_process(
            [
                *wrapper,
                CLI,
                "serve",
                *NO_METRICS,
                "--grpc-host",
                "127.0.0.1",
                "--grpc-port",
                str(self.port),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(self.http_port),
                "--data-dir",
                str(data_dir),
                *extra,
            ],
            self.log,
            start_new_session=True,  # a process group of its own, as under systemd
            env=env,
        )

    def wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in (self.port, self.http_port):
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"exited with {self.process.returncode}: {self.output()}")
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing listens on {port}")
                time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def instances() -> Iterator[list[Instance]]:
    """Instances a test started; whatever still runs at its end is killed."""
    started: list[Instance] = []
    yield started
    for instance in started:
        instance.kill()


def _stop_by_signal(data_dir: Path, workers: int, signum: int) -> str | None:
    """Starts an instance, signals its process group the moment both ports listen, and says
    what went wrong, if anything."""
    instance = Instance(data_dir, "--workers", str(workers))
    try:
        instance.wait_until_listening()
        os.killpg(instance.process.pid, signum)
        code = instance.process.wait(timeout=90)
    except (AssertionError, subprocess.TimeoutExpired) as error:
        instance.kill()
        return f"--workers {workers}, {signal.Signals(signum).name}: {error}"
    output = instance.output()
    if code != 0 or "died" in output or "Traceback" in output:
        return f"--workers {workers}, {signal.Signals(signum).name}: exit {code}\n{output}"
    return None


# The race these stops guard against failed 3 of 3 SIGTERMs with --workers 2 when it was
# found, so 8 of each kind (32 in all) would still catch it, at 40% of what 20 cost the suite.
STOPS_PER_KIND = 8
# Lanes of one kind's stops: under xdist two kinds run at once, LANES starts in all.
STOP_LANES = LANES // 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
@pytest.mark.parametrize("workers", [1, 2], ids=lambda w: f"workers-{w}")
def test_every_stop_by_sigterm_or_sigint_to_the_group_exits_0(
    tmp_path: Path, workers: int, signum: int
) -> None:
    """Four kinds (so that xdist spreads them) of STOPS_PER_KIND stops each. The first start of a kind
    migrates an empty folder itself; the others start on a migrated copy, which is what costs
    the least CPU, as the stops, not the migration, are under test."""

    def stop(n: int) -> str | None:
        data_dir = tmp_path / f"run-{n}"
        return _stop_by_signal(data_dir if n == 0 else pre_migrated(data_dir), workers, signum)

    with ThreadPoolExecutor(STOP_LANES) as pool:
        outcomes = list(pool.map(stop, range(STOPS_PER_KIND)))
    failures = [outcome for outcome in outcomes if outcome is not None]
    assert not failures, f"{len(failures)} of {STOPS_PER_KIND} stops failed:\n" + "\n".join(
        failures
    )


@pytest.fixture
def migrated_postgres(tmp_path: Path) -> Iterator[str]:
    with fresh_postgres_database("cs_life") as url:
        migrated = subprocess.run(
            [CLI, "migrate", "--database-url", url], capture_output=True, text=True, timeout=90
        )
        assert migrated.returncode == 0, migrated.stderr
        yield url


def test_sigterm_turns_health_not_serving_at_once_while_rest_drains(
    tmp_path: Path, instances: list[Instance], migrated_postgres: str
) -> None:
    instance = Instance(
        tmp_path / "data",
        "--shutdown-grace-seconds",
        "60",
        "--database-url",
        migrated_postgres,
    )
    instances.append(instance)
    instance.wait_until_listening()
    token = service_token(tmp_path / "data", "--tenant", "acme", "--scope", ALL_SCOPES)
    target = f"127.0.0.1:{instance.port}"

    async def scenario() -> None:
        # The test holds the segments table: a REST request stays in flight until it lets go.
        database = await asyncpg.connect(migrated_postgres)
        lock = database.transaction()
        await lock.start()
        await database.execute("LOCK TABLE segments IN ACCESS EXCLUSIVE MODE")
        async with aiohttp.ClientSession() as session:

            async def get() -> tuple[int, str]:
                async with session.get(
                    f"http://127.0.0.1:{instance.http_port}"
                    "/customer-segment/acme/segments/gold/customers/c1",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=aiohttp.ClientTimeout(total=90),
                ) as response:
                    return response.status, await response.text()

            in_flight = asyncio.create_task(get())
            for _ in range(300):
                if in_flight.done():
                    raise AssertionError(f"not held: {in_flight.result()}")
                waiting = await database.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                if waiting:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the REST request never reached the database")
            async with grpc.aio.insecure_channel(target) as channel:
                watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
                serving = health_pb2.HealthCheckResponse.SERVING
                assert (await asyncio.wait_for(watch.read(), 30)).status == serving
                os.killpg(instance.process.pid, signal.SIGTERM)
                # Not once the REST request has drained (up to 60 s): now.
                update = await asyncio.wait_for(watch.read(), 20)
                assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
            # New calls are refused, not taken (without a token one would be UNAUTHENTICATED):
            # the port has sent GOAWAY, and a call that still arrives is cancelled.
            async with grpc.aio.insecure_channel(target) as fresh:
                stub = assignment_pb2_grpc.CustomerAssignmentServiceStub(fresh)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.GetAssignment(
                        assignment_pb2.GetAssignmentRequest(tenant="acme"), timeout=20
                    )
                assert refused.value.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                ), refused.value
            # The REST request in flight is still answered once the table is free.
            await lock.rollback()
            status, body = await asyncio.wait_for(in_flight, 60)
            assert status == 404, body  # no segment gold
        await database.close()

    asyncio.run(scenario())
    assert instance.process.wait(timeout=30) == 0
    output = instance.output()
    assert "stopped" in output and "Traceback" not in output


def test_kill_9_leaves_no_socket_file_behind_and_the_file_limit_is_raised(
    tmp_path: Path, instances: list[Instance]
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    # Started as systemd and shells start services: a soft limit of 1,024 open files.
    instance = Instance(
        tmp_path / "data",
        env={**os.environ, "TMPDIR": str(temporary)},
        wrapper=("sh", "-c", 'ulimit -S -n 1024 && exec "$@"', "sh"),
    )
    instances.append(instance)
    instance.wait_until_listening()
    limits = Path(f"/proc/{instance.process.pid}/limits").read_text().splitlines()
    soft, hard = next(line for line in limits if line.startswith("Max open files")).split()[3:5]
    assert soft == hard != "1024"
    os.killpg(instance.process.pid, signal.SIGKILL)
    instance.process.wait(timeout=30)
    assert list(temporary.iterdir()) == []


def _serve(data_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "serve", *NO_METRICS, "--data-dir", str(data_dir), *arguments],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_second_instance_on_the_same_ports_is_refused(
    tmp_path: Path, instances: list[Instance]
) -> None:
    first = Instance(tmp_path / "first", "--workers", "2")
    instances.append(first)
    first.wait_until_listening()
    ports = ["--grpc-host", "127.0.0.1", "--http-host", "127.0.0.1"]
    for workers in ("2", "1"):
        same = _serve(
            tmp_path / "second",
            *ports,
            "--grpc-port",
            str(first.port),
            "--http-port",
            str(first.http_port),
            "--workers",
            workers,
        )
        assert same.returncode == 2, same.stderr
        assert same.stderr == (
            f"customer-segments: another customer-segments instance already serves gRPC port "
            f"{first.port}: stop it or choose another --grpc-port\n"
        )
    rest_only = _serve(
        tmp_path / "third",
        *ports,
        "--grpc-port",
        str(free_port()),
        "--http-port",
        str(first.http_port),
        "--workers",
        "2",
    )
    assert rest_only.returncode == 2
    assert f"already serves REST port {first.http_port}" in rest_only.stderr
    os.killpg(first.process.pid, signal.SIGTERM)
    assert first.process.wait(timeout=60) == 0


def _mistakes(taken_grpc: int, taken_rest: int) -> list[tuple[str, list[str], str]]:
    missing_database = f"{PG_ADMIN_URL.rpartition('/')[0]}/cs_missing_{secrets.token_hex(4)}"
    return [
        (
            "gRPC port taken",
            ["--grpc-port", str(taken_grpc)],
            f"cannot listen for gRPC on 127.0.0.1:{taken_grpc} (Address already in use)",
        ),
        (
            "REST port taken",
            ["--http-port", str(taken_rest)],
            f"cannot listen for REST on 127.0.0.1:{taken_rest} (Address already in use)",
        ),
        (
            "SQLite file in a folder that does not exist",
            ["--database-url", "sqlite:///nonexistent/dir/x.db"],
            "does not exist; create it or correct --database-url",
        ),
        (
            "PostgreSQL database that does not exist",
            ["--database-url", missing_database],
            f'the database "{missing_database.rpartition("/")[2]}" does not exist on PostgreSQL',
        ),
        (
            "unreachable database",
            ["--database-url", "postgresql://postgres@127.0.0.1:1/x"],
            "cannot reach PostgreSQL at 127.0.0.1:1 (Connection refused)",
        ),
        (
            "bad --jwks path",
            ["--jwks", "/nonexistent/jwks.json"],
            "cannot use the JWKS file /nonexistent/jwks.json: No such file or directory",
        ),
    ]


def test_start_up_mistakes_are_one_line_and_exit_code_2(tmp_path: Path) -> None:
    require_postgres()  # (the database that does not exist is on it)
    with ExitStack() as listeners:

        def taken_port() -> int:
            # One per attempt: two attempts on one port would also race for its port lock,
            # and the loser would say "another instance", not "Address already in use".
            taken = listeners.enter_context(socket.socket())
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            return int(taken.getsockname()[1])

        cases = [
            (name, arguments, expected, workers)
            for workers in ("1", "2")
            for name, arguments, expected in _mistakes(taken_port(), taken_port())
        ]

        def attempt(n: int) -> str | None:
            name, arguments, expected, workers = cases[n]
            defaults = ["--grpc-host", "127.0.0.1", "--http-host", "127.0.0.1"]
            if "--grpc-port" not in arguments:
                defaults += ["--grpc-port", str(free_port())]
            if "--http-port" not in arguments:
                defaults += ["--http-port", str(free_port())]
            result = _serve(tmp_path / f"data-{n}", *defaults, *arguments, "--workers", workers)
            lines = result.stderr.splitlines()
            if (
                result.returncode == 2
                and len(lines) == 1
                and lines[0].startswith("customer-segments: ")
                and expected in lines[0]
            ):
                return None
            return f"{name}, --workers {workers}: exit {result.returncode}\n{result.stderr}"

        with ThreadPoolExecutor(LANES) as pool:
            failures = [f for f in pool.map(attempt, range(len(cases))) if f is not None]
    assert not failures, "\n".join(failures)
