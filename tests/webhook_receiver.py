"""A real webhook receiver on loopback (aiohttp), for the delivery tests and the benchmark: it
records every request and answers as the test scripts it (statuses in turn, or holding the
request until released)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float  # time.time()

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    # Statuses answered in turn; once used up, `default`.
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    # While set (not released), requests wait before their answer.
    hold: asyncio.Event | None = None
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        async with self.arrived:
            self.received.append(Received(request.path, headers, body, time.time()))
            self.arrived.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else self.default
        return web.Response(status=status)

    async def wait_for(self, count: int) -> list[Received]:
        """The first `count` requests, once they have arrived (within 30 s: generous)."""
        async with asyncio.timeout(30), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]


@asynccontextmanager
async def receiving(**options: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(**options)
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", receiver.port)
    await site.start()
    receiver.port = int(runner.addresses[0][1])
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        await runner.cleanup()
