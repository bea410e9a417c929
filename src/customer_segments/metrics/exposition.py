"""The instance's side of the metrics: its private directory and the /metrics server.

The top process (`serve`, or `gateway` alone) makes the directory before any metric exists,
and its children (forked workers) inherit it through the
environment. It serves the scrape from a thread of prometheus_client's; with --workers, only
after the workers are forked, since a thread does not survive a fork.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from customer_segments.metrics import MULTIPROC_DIR, enabled
from customer_segments.startup import port_taken

log = logging.getLogger(__name__)

# prometheus_client still reads the old lower-case name when the upper-case one is missing.
_INHERITED = (MULTIPROC_DIR, MULTIPROC_DIR.lower())


@contextmanager
def instance_metrics(port: int) -> Iterator[None]:
    """A fresh directory for this instance's metrics while it runs, removed at the end; with
    port 0 none, and none inherited either (metrics are off in every process)."""
    for name in _INHERITED:
        os.environ.pop(name, None)
    if not port:
        yield
        return
    directory = tempfile.mkdtemp(prefix="customer-segments-metrics-")
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def metrics_server(host: str, port: int) -> Iterator[None]:
    """GET /metrics on host:port, summing every process of the instance, while in the block."""
    if not port or not enabled():
        yield
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as error:
        reason = error.strerror or str(error)
        raise port_taken(host, port, "metrics", "--metrics-port", reason) from None
    log.info("metrics on http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def process_exited(pid: int) -> None:
    """Drops the gauges of a process of the instance that has exited (its counters stay in
    the sums)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
