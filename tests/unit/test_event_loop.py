"""--event-loop picks the loop a server process runs on."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from customer_segments import event_loop


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)],
)
def test_the_chosen_loop_runs_the_server(kind: event_loop.EventLoop, expected: type) -> None:
    loop = event_loop.run(_running_loop(), kind)
    assert isinstance(loop, expected)
    assert isinstance(loop, uvloop.Loop) == (kind == "uvloop")
