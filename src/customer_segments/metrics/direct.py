"""Per-call counters and histograms written straight into this process's metric files.

prometheus_client's multiprocess value takes a lock, asks os.getpid() (a system call: the
value files are per process, and a forked child must not write its parent's) and goes through
about eight Python calls for each increment; a GetAssignment call makes nine. These write the
same value at the same place of the same file (the library's own value object, kept in step,
so that its path and this one can update one value in turn) and ask nothing per update: a
fork is seen by the counter os.register_at_fork keeps, and the first update after one takes
the library's own path, which moves the process to files of its own.

Only for values updated on the event loop's thread (every per-call metric is): the library's
lock is not taken. tests/unit/test_metrics_direct.py pins the scrape against the library's
own path, across a fork too.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_left
from typing import Any

_pack_two_doubles = struct.Struct("dd").pack_into

# Forks of this process's line so far, as the child sees it: a value cached before the last
# one belongs to the parent's files.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class _FileValue:
    """One value of a metric file (a prometheus_client MmapedValue) and where it lies."""

    __slots__ = ("_file", "_forks", "_position", "_value")

    def __init__(self, value: Any) -> None:
        self._value = value
        self._forks = -1  # unknown until the library has written it once
        self._file: Any = None
        self._position = 0

    def add(self, amount: float) -> None:
        value = self._value
        if self._forks != _forks or value._file is not self._file:
            value.inc(amount)  # the library's path: after a fork it opens the child's files
            self._file = value._file
            self._position = self._file._positions[value._key]
            self._forks = _forks
            return
        value._value += amount
        value._timestamp = 0.0
        # MmapedDict.write_value's write; its mmap is read each time (growing the file
        # replaces it).
        _pack_two_doubles(self._file._m, self._position, value._value, 0.0)


def _file_value(value: Any) -> _FileValue | None:
    """None for a value of the library's single-process mode (a test's), which has no file."""
    return _FileValue(value) if getattr(value, "_multiprocess", False) else None


class DirectCounter:
    """`inc` of a labelled Counter child (or a Counter without labels)."""

    __slots__ = ("_child", "_value")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._value = _file_value(child._value)

    def inc(self, amount: float = 1.0) -> None:
        if self._value is None or amount < 0:
            self._child.inc(amount)  # the library refuses a negative amount
        else:
            self._value.add(amount)


class DirectHistogram:
    """`observe` of a labelled Histogram child: the sum and the one bucket the library adds
    to (its files hold buckets uncumulated), found by bisection rather than a loop."""

    __slots__ = ("_bounds", "_buckets", "_child", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)  # +Inf last
        self._sum = _file_value(child._sum)
        buckets = [_file_value(bucket) for bucket in child._buckets]
        self._buckets = [bucket for bucket in buckets if bucket is not None]
        if len(self._buckets) != len(buckets):
            self._sum = None

    def observe(self, amount: float) -> None:
        if self._sum is None or amount != amount:  # NaN: in no bucket, as the library has it
            self._child.observe(amount)
            return
        self._sum.add(amount)
        # The first bound the amount is at or under, as the library's `amount <= bound` loop.
        self._buckets[bisect_left(self._bounds, amount)].add(1.0)
