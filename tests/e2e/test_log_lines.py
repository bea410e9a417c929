"""Log forging: a value in a log message never writes a line of its own. A request path that
holds %0A and a fake audit record, logged by the real processes' logging set-up, stays on one
line, its newline escaped, in text and in JSON lines."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest

from customer_segments.logs import LogFormat
from tests.e2e.test_service_process import CLI, NO_METRICS, free_port

FAKE_AUDIT = (
    "2026-12-01 08:00:00,000 INFO customer_segments.audit: write UpsertAssignment "
    "tenant=acme subject='admin' request_id='x' segment='gold' outcome=ok"
)
# A line that starts like an audit record, with or without a worker or gateway tag.
AUDIT_LINE = re.compile(r"^\S+ \S+ INFO (\[\w+ \d+\] )?customer_segments\.audit: ", re.MULTILINE)


def _command_line(
    grpc_target: str, port: int, log_format: LogFormat
) -> tuple[subprocess.Popen[str], Callable[[], None]]:
    """`customer-segments gateway` (cli.py's logging set-up)."""
    process = subprocess.Popen(
        [
            *(CLI, "gateway", *NO_METRICS, "--grpc-target", grpc_target),
            *("--log-format", log_format),
            *("--http-host", "127.0.0.1", "--http-port", str(port)),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, lambda: process.send_signal(signal.SIGTERM)


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the gateway did not listen within 60 s")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_newline_in_a_logged_path_writes_no_line_of_its_own(log_format: LogFormat) -> None:
    # No gRPC server there: every call fails UNAVAILABLE, which the gateway logs with the path.
    grpc_target = f"127.0.0.1:{free_port()}"
    port = free_port()
    process, stop = _command_line(grpc_target, port, log_format)
    try:
        _wait_listening(port, process)
        path = "/customer-segment/acme" + quote("\n" + FAKE_AUDIT + "\n") + "/segments/x/customers"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", path, headers={"Authorization": "Bearer x"})
        assert connection.getresponse().status == 503
        connection.close()
    finally:
        stop()
        _, log = process.communicate(timeout=60)
    if log_format == "text":
        assert "acme\\n2026-12-01 08:00:00,000 INFO customer_segments.audit" in log, log
        assert not AUDIT_LINE.search(log), log
        return
    lines = [json.loads(line) for line in log.splitlines()]  # each line one JSON object
    assert any(f"acme\n{FAKE_AUDIT}\n" in line["message"] for line in lines), log
    assert not any(line["logger"] == "customer_segments.audit" for line in lines), log
