"""metrics/direct.py writes what prometheus_client's own multiprocess path writes: the same
scrape for the same calls, and a forked process's values in files of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from customer_segments.metrics.definitions import GRPC_BUCKETS
from customer_segments.metrics.direct import DirectCounter, DirectHistogram

# At, under and over the bounds, the last over every one (+Inf).
AMOUNTS = (0.0, 1e-9, 0.005, 0.0050001, 0.01, 0.3, 1.0, 9.99, 10.0, 20.0, 0.005)


@pytest.fixture
def metric_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The library's multiprocess mode for the metrics made in the test, as the service has
    it with PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    value_class = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    monkeypatch.setattr(values, "ValueClass", value_class)
    yield tmp_path
    value_class.close_all_files()


def scrape(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
    }


def by_way(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], way: str
) -> dict[object, float]:
    return {
        (name, tuple(label for label in labels if label[0] != "way")): value
        for (name, labels), value in found.items()
        if ("way", way) in labels
    }


def test_the_scrape_is_the_one_of_the_library_s_own_path(metric_files: Path) -> None:
    calls = Counter("t_calls_total", "Calls.", ("way",), registry=None)
    seconds = Histogram("t_seconds", "Durations.", ("way",), buckets=GRPC_BUCKETS, registry=None)
    direct_calls = DirectCounter(calls.labels("direct"))
    direct_seconds = DirectHistogram(seconds.labels("direct"))
    for number, amount in enumerate(AMOUNTS):
        calls.labels("library").inc()
        seconds.labels("library").observe(amount)
        direct_calls.inc()
        direct_seconds.observe(amount)
        if number % 3 == 0:  # the library's path on the same value, in turn with direct's
            calls.labels("library").inc(2.5)
            calls.labels("direct").inc(2.5)
    found = scrape(metric_files)
    library = by_way(found, "library")
    assert by_way(found, "direct") == library
    assert library[("t_calls_total", ())] == len(AMOUNTS) + 4 * 2.5
    assert library[("t_seconds_bucket", (("le", "0.005"),))] == 4


def test_a_forked_process_writes_files_of_its_own(metric_files: Path) -> None:
    calls = DirectCounter(Counter("t_forked_total", "Calls.", registry=None))
    calls.inc()
    calls.inc()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's coverage is not collected)
        try:
            for _ in range(3):
                calls.inc()
        finally:
            os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    calls.inc()  # the parent's third, on its own count
    files = sorted(path.name for path in metric_files.glob("counter_*.db"))
    assert files == sorted(f"counter_{pid}.db" for pid in (os.getpid(), child))
    assert scrape(metric_files)[("t_forked_total", ())] == 6
