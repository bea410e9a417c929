"""What every process of the service settles before it serves: the open-file limit, the
connection cap below it, one instance per port, and start-up mistakes said in one line (a small
module of its own, like shutdown.py, that imports nothing of the server)."""

from __future__ import annotations

import errno
import resource
import socket

# Descriptors a process needs beside its connections: database pool, log files, the
# gateway's channel, Python's own. The cap on connections stays this far below the limit.
RESERVED_FILES = 128
MAX_DEFAULT_CONNECTIONS = 10_000


class StartupError(Exception):
    """A mistake in the settings or the environment that stops the service from starting; the
    message names what is wrong and what to do, in one line."""


def raise_open_file_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard one (systemd and shells start at 1,024, which
    idle connections alone can exhaust) and returns it; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # some sandboxes refuse; the cap below follows what we have
    return soft


def connection_limit(configured: int) -> int:
    """The connections one listener of this process accepts: `configured`, or with 0, what
    leaves RESERVED_FILES descriptors free (the gRPC port and the REST port are in processes
    of their own, each with its own descriptor table)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    available = max(soft - RESERVED_FILES, 16)
    if configured:
        return configured
    return min(available, MAX_DEFAULT_CONNECTIONS)


class PortLock:
    """Held while this instance serves `port`. A second instance on the same port, even one
    whose SO_REUSEPORT would let the kernel share it, fails to take it.

    The lock is a Linux abstract Unix socket named after the port: binding a name is
    exclusive, it lives in the network namespace the port lives in, and it disappears with the
    process that holds it (kill -9 included), so there is no stale file to clean up. The port
    alone is the key, whatever the interface: 0.0.0.0 and 127.0.0.1 on one port overlap."""

    def __init__(self, port: int, what: str, flag: str) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._socket.bind(f"\0customer-segments-port-{port}")
        except OSError as error:
            self._socket.close()
            if error.errno != errno.EADDRINUSE:
                raise
            raise StartupError(
                f"another customer-segments instance already serves {what} port {port}: "
                f"stop it or choose another {flag}"
            ) from None

    def release(self) -> None:
        self._socket.close()


def lock_ports(ports: list[tuple[int, str, str]]) -> list[PortLock]:
    """Locks each (port, what, flag) that is fixed (port 0 lets the kernel pick a free one)."""
    locks: list[PortLock] = []
    try:
        for port, what, flag in ports:
            if port:
                locks.append(PortLock(port, what, flag))
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def port_taken(host: str, port: int, what: str, flag: str, error: str) -> StartupError:
    return StartupError(
        f"cannot listen for {what} on {host}:{port} ({error}): the port is taken or the "
        f"address is not this machine's; stop what uses it or choose another {flag}"
    )


def require_free_port(host: str, port: int, what: str, flag: str) -> None:
    """Binds `host:port` for a moment, as the server will: with --workers, each worker binds
    with SO_REUSEPORT, and the parent checks here first so that a taken port is one message
    rather than one per worker."""
    if not port:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise port_taken(host, port, what, flag, str(error)) from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise port_taken(host, port, what, flag, error.strerror or str(error)) from None
