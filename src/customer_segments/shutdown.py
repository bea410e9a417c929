"""When a process of the service stops: on SIGTERM or SIGINT (a small module of its own, so
that the `gateway` command can use it without importing the server and the database stack).

A stop signal can come at any moment, to any process of the group (systemd and a terminal's
Ctrl-C signal them all), also before a process has its handlers: during start-up the default
action of SIGTERM would kill it and SIGINT would raise KeyboardInterrupt with a traceback.
So `serve` holds these signals (blocks them: they wait, pending) from its first line until its
handlers exist, and starts its processes with them ignored (a disposition survives exec; a
blocked mask does not, Python's subprocess clears it), until their own handlers exist. A
signal such a child ignored meanwhile reached its parent too, or is passed on by it
(see app.serve_with_workers), and the parent stops the child.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def hold_stop_signals() -> None:
    """Blocks SIGTERM and SIGINT in this thread until stop_requested() takes them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def children_ignore_stop_signals() -> Iterator[None]:
    """Processes started inside begin with SIGTERM and SIGINT ignored; here they stay pending
    meanwhile (Linux never discards a blocked signal, even an ignored one)."""
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def stop_requested() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, including one that came while they were held."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, event.set)
    release_stop_signals()
    return event
