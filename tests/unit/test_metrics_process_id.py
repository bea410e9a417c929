"""The process id the metrics' value files are chosen by (metrics/__init__.py) follows a fork,
as os.getpid() would: a forked worker writes files of its own."""

from __future__ import annotations

import os

from customer_segments import metrics


def test_the_process_id_is_the_forked_childs_own() -> None:
    assert metrics._process_id() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, f"{metrics._process_id()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    try:
        reported, actual = os.read(read, 100).decode().split()
    finally:
        os.close(read)
        os.waitpid(child, 0)
    assert reported == actual != str(os.getpid())
