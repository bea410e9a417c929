"""How often commits make the webhook dispatcher poll: once per wake gap under a stream of
commits (a bulk import), at once after a quiet spell."""

from __future__ import annotations

import asyncio
from itertools import pairwise

from customer_segments.services.webhook_delivery import DeliverySettings, WebhookDispatcher


class _Counting(WebhookDispatcher):
    """A dispatcher whose poll only notes when it ran (no database)."""

    def __init__(self, settings: DeliverySettings) -> None:
        super().__init__(None, settings)  # type: ignore[arg-type]  # the store is never used
        self.polls: list[float] = []

    async def _poll(self) -> None:
        self.polls.append(asyncio.get_running_loop().time())


async def _run_woken(settings: DeliverySettings, seconds: float) -> tuple[list[float], int]:
    """The moments of the polls while commits come every 5 ms for `seconds`, the first after
    a quiet spell, relative to that first commit; and how many commits came."""
    dispatcher = _Counting(settings)
    task = asyncio.create_task(dispatcher._run())
    loop = asyncio.get_running_loop()
    commits = 0
    try:
        await asyncio.sleep(0.3)  # the first poll, then quiet
        dispatcher.polls.clear()
        woken = loop.time()
        while loop.time() < woken + seconds:
            dispatcher.wake()
            commits += 1
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
    return [poll - woken for poll in dispatcher.polls], commits


async def test_a_stream_of_commits_polls_once_per_wake_gap() -> None:
    settings = DeliverySettings(poll_interval_seconds=10.0, wake_gap_seconds=0.1)
    polls, commits = await _run_woken(settings, seconds=0.5)
    assert polls[0] < 0.05, "a commit after a quiet spell is looked at at once"
    assert 4 <= len(polls) <= 7 < commits, polls  # about one per 0.1 s, not one per commit
    assert all(later - earlier >= 0.099 for earlier, later in pairwise(polls)), polls


async def test_without_a_gap_every_commit_polls() -> None:
    """The same stream with no gap polls about once per commit: the test above can fail."""
    settings = DeliverySettings(poll_interval_seconds=10.0, wake_gap_seconds=0.0)
    polls, commits = await _run_woken(settings, seconds=0.2)
    assert len(polls) >= commits * 0.75 > 10, (len(polls), commits)


async def test_the_gap_never_outlasts_the_poll_interval() -> None:
    settings = DeliverySettings(poll_interval_seconds=0.05, wake_gap_seconds=0.1)
    polls, _ = await _run_woken(settings, seconds=0.3)
    assert len(polls) >= 5, polls  # every 0.05 s


async def _quiet_polls(settings: DeliverySettings, holding: bool, seconds: float) -> int:
    """How many polls a dispatcher makes in `seconds` with no commit."""
    dispatcher = _Counting(settings)
    if holding:
        dispatcher._workers[("acme", "hook-1")] = object()  # type: ignore[assignment]
    task = asyncio.create_task(dispatcher._run())
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
    return len(dispatcher.polls)


async def test_a_process_delivering_to_no_endpoint_polls_ten_times_less_often() -> None:
    settings = DeliverySettings(poll_interval_seconds=0.02, lease_seconds=30.0)
    holding = await _quiet_polls(settings, holding=True, seconds=0.5)
    idle = await _quiet_polls(settings, holding=False, seconds=0.5)
    assert holding >= 12, holding  # every 0.02 s (a busy machine may make it fewer)
    assert 2 <= idle <= 4, idle  # at 0, 0.2, 0.4 s


async def test_an_idle_poll_stays_well_within_the_lease() -> None:
    settings = DeliverySettings(poll_interval_seconds=0.05, lease_seconds=0.6)
    idle = await _quiet_polls(settings, holding=False, seconds=0.45)
    assert idle >= 4, idle  # every 0.1 s: a sixth of the lease, not 0.5 s
