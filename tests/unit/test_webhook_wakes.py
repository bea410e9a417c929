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


async def _run_woken(settings: DeliverySettings, wakes: int, every: float) -> list[float]:
    """The moments of the polls while `wakes` commits come `every` seconds apart, the first
    after a quiet spell; relative to that first commit."""
    dispatcher = _Counting(settings)
    task = asyncio.create_task(dispatcher._run())
    try:
        await asyncio.sleep(0.3)  # the first poll, then quiet
        dispatcher.polls.clear()
        woken = asyncio.get_running_loop().time()
        for _ in range(wakes):
            dispatcher.wake()
            await asyncio.sleep(every)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
    return [poll - woken for poll in dispatcher.polls]


async def test_a_stream_of_commits_polls_once_per_wake_gap() -> None:
    settings = DeliverySettings(poll_interval_seconds=10.0, wake_gap_seconds=0.1)
    polls = await _run_woken(settings, wakes=100, every=0.005)  # 0.5 s of commits
    assert polls[0] < 0.05, "a commit after a quiet spell is looked at at once"
    assert 4 <= len(polls) <= 7, polls  # about one per 0.1 s, not 100
    assert all(later - earlier >= 0.099 for earlier, later in pairwise(polls)), polls


async def test_without_a_gap_every_commit_polls() -> None:
    """The same stream with no gap polls about once per commit: the test above can fail."""
    settings = DeliverySettings(poll_interval_seconds=10.0, wake_gap_seconds=0.0)
    polls = await _run_woken(settings, wakes=40, every=0.005)
    assert len(polls) >= 30, polls


async def test_the_gap_never_outlasts_the_poll_interval() -> None:
    settings = DeliverySettings(poll_interval_seconds=0.05, wake_gap_seconds=0.1)
    polls = await _run_woken(settings, wakes=60, every=0.005)  # 0.3 s
    assert len(polls) >= 5, polls  # every 0.05 s
