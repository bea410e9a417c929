"""An internal service can depend on the client alone: it imports nothing of the server, and
the distribution's core dependencies are the client's (the server's are the `server` extra)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Libraries only the server needs, and the server's own packages.
SERVER_ONLY = [
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "aiohttp",
    "alembic",
    "re2",
    "pydantic",
    "jwt",
    "jsonpatch",
    "jsonpointer",
    "grpc_reflection",
    "grpc_health",
    "customer_segments.domain",
    "customer_segments.services",
    "customer_segments.store",
    "customer_segments.gateway",
    "customer_segments.grpc",
    "customer_segments.auth",
    "customer_segments.query",
    "customer_segments.app",
    "customer_segments.config",
]

CLIENT_DEPENDENCIES = {"grpcio", "grpcio-status", "googleapis-common-protos", "protobuf"}


def test_the_client_imports_and_opens_without_the_server_libraries() -> None:
    program = textwrap.dedent(
        f"""
        import asyncio, importlib.abc, sys
        BLOCKED = {SERVER_ONLY!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError(f"the client imported {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import customer_segments.client as client

        async def main():
            async with client.CustomerSegmentsClient("127.0.0.1:1", token="t", timeout=0.01) as c:
                try:
                    await c.get_segment("acme", "gold")
                except client.CustomerSegmentsError:
                    pass

        asyncio.run(main())
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_core_dependencies_are_the_clients() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]
    }
    assert names == CLIENT_DEPENDENCIES
    server = {
        re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower()
        for spec in project["optional-dependencies"]["server"]
    }
    assert {"sqlalchemy", "asyncpg", "aiohttp", "alembic", "google-re2"} <= server


def test_the_command_without_the_server_says_what_to_install() -> None:
    program = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "pydantic":
                    raise ModuleNotFoundError("no pydantic here", name=name)
                return None

        sys.meta_path.insert(0, Block())
        from customer_segments.command import main
        main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 1
    assert "pydantic is not installed" in done.stderr
    assert "customer-segments[server]" in done.stderr
