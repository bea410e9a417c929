"""The client example of README.md, run as written (in a process of its own, as a user would)
against the real server on both databases."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from customer_segments.client import CustomerSegmentsClient
from customer_segments.grpc.server import GrpcServer
from tests.helpers import token

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## A client for internal callers") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "no python block in the client section of README.md"
    return found.group(1)


async def test_the_readme_client_example_runs_as_written(grpc_server: GrpcServer) -> None:
    # The example writes to tenant acme, which other tests use; its segment is its own.
    await readme_example_runs(f"127.0.0.1:{grpc_server.port}", token("acme"))


async def readme_example_runs(target: str, access: str) -> None:
    """Runs the example against `target` with the token `access` of tenant acme, and checks
    what it printed and wrote (also through the cluster's HAProxy, tests/e2e/test_cluster.py)."""
    # The server runs in this event loop, so the example must not block it.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        readme_example(),
        env={**os.environ, "SEGMENTS_TARGET": target, "TOKEN": access},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "1 ['c1']", lines
    assert re.fullmatch(r"\w*NOT_FOUND \{.*\}", lines[1]), lines
    assert len(lines) == 2, lines  # no failed bulk item
    async with CustomerSegmentsClient(target, token=access) as client:
        page = await client.list_assignments("acme", "vip", include_total_count=True)
    assert page.total_count == 10_001
