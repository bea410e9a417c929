"""Prometheus metrics, one scrape over every process of an instance.

prometheus-client's multiprocess mode: each process writes its values to files of its own in
the instance's private directory (PROMETHEUS_MULTIPROC_DIR, made by the top process, see
exposition.py), and the top process's /metrics reads them all. Whether metrics are on is
that variable, which the processes of an instance inherit: a process without it records
nothing and never imports prometheus_client (a third of a second of start-up).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from customer_segments.metrics.definitions import Instruments

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def enabled() -> bool:
    return MULTIPROC_DIR in os.environ


@functools.cache
def instruments() -> Instruments | None:
    """This process's metrics, or None when metrics are off. The first call decides: the
    variable must be set before (prometheus_client picks its value files when imported)."""
    if not enabled():
        return None
    from customer_segments.metrics.definitions import Instruments

    return Instruments()
