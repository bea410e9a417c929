"""Whether this process can serve calls: its database answers. Checked every second or so,
so that health probes and balancers follow an outage and the recovery after it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from customer_segments.store.store import Store

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0


async def follow_database(
    store: Store,
    on_change: Callable[[bool], Awaitable[None]],
    interval: float = CHECK_INTERVAL_S,
) -> None:
    """Calls `on_change(answers)` each time the database stops or starts answering, until
    cancelled. It answered at start (the store was opened); one log line per change, however
    long an outage lasts."""
    answers = True
    while True:
        await asyncio.sleep(interval)
        # The pools' gauges are sampled by this same loop: nothing per call (store/metrics.py).
        store.database.sample_pool_usage()
        reason = await store.database.check()
        if (reason is None) == answers:
            continue
        answers = reason is None
        if answers:
            log.info("the database answers again: serving")
        else:
            log.warning("the database does not answer (%s): not serving until it does", reason)
        await on_change(answers)
