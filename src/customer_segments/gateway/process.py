"""The gateway of `serve`, in a process of its own.

In the server's process the gateway shared one core (and one GIL) with the gRPC server it
calls: a REST call paid for aiohttp, a gRPC client and the gRPC server on the same core, and
REST GET reached about 55% of the same call over gRPC. In a process of its own it runs beside
the server instead of in turn with it (measured: 67-78%).

The gateway runs as `python -m customer_segments.gateway.process`, which imports the gateway
and nothing of the server or the database (about half the memory of a copy of the server). The
two processes are tied by a socket pair: the gateway reports on it whether it listens, and
stops when the server's end closes, which happens when the server stops it and also when the
server dies, so a gateway never outlives its server. The server, in turn, learns of the
gateway's death from the same socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from typing import NamedTuple

from customer_segments import event_loop
from customer_segments.event_loop import EventLoop
from customer_segments.gateway.connection_limits import HttpLimits
from customer_segments.logs import LogFormat, configure_logging
from customer_segments.metrics.exposition import process_exited
from customer_segments.shutdown import (
    children_ignore_stop_signals,
    hold_stop_signals,
    stop_requested,
)
from customer_segments.startup import StartupError, port_taken
from customer_segments.tracing import traced

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
MODULE = "customer_segments.gateway.process"  # this module, also when it runs as __main__


class GatewayOptions(NamedTuple):
    grpc_target: str
    host: str
    port: int
    grace: float
    share_port: bool
    log_level: str
    limits: HttpLimits
    # REST CORS origins (or `*`); none: CORS is off.
    cors_origins: tuple[str, ...] = ()
    # The server's, resolved (a terminal or not: the gateway writes to the same stderr).
    log_format: LogFormat = "text"
    access_log: bool = True
    event_loop: EventLoop = "uvloop"


STOPPING = b"stopping\n"


class GatewayProcess:
    """A started gateway process; `port` is the bound one. When it says it stops (a signal
    reached it), `stop` is set; if it exits without saying so while `stop` is not set, `died`
    turns true and `stop` is set."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        control: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        port: int,
        stop: asyncio.Event,
    ) -> None:
        self._process = process
        self._reader, self._writer = control
        self.port = port
        self.died = False
        self._watch = asyncio.create_task(self._watch_control(stop))

    async def _watch_control(self, stop: asyncio.Event) -> None:
        try:
            said = await self._reader.readline()  # "stopping", or b"" once it is gone
        except OSError:
            said = b""
        if said != STOPPING and not stop.is_set():
            self.died = True
        stop.set()

    async def stop(self, grace: float) -> None:
        """Closing the socket asks the gateway to stop; it drains its requests for `grace`."""
        self._watch.cancel()
        self._writer.close()
        try:
            await asyncio.wait_for(asyncio.to_thread(self._process.wait), grace + 5)
        except TimeoutError:
            log.warning("the gateway process did not stop in time; killing it")
            self._process.kill()
            await asyncio.to_thread(self._process.wait)
        process_exited(self._process.pid)


async def start_gateway_process(options: GatewayOptions, stop: asyncio.Event) -> GatewayProcess:
    """Returns once the gateway listens; raises StartupError when it cannot (port taken...)."""
    ours, theirs = socket.socketpair()
    # subprocess, not the loop's subprocess_exec: uvloop's (libuv's) resets the child's signal
    # dispositions, and a stop signal then killed a gateway that had no handlers yet.
    with children_ignore_stop_signals():  # until the gateway has its handlers (see shutdown.py)
        process = subprocess.Popen(  # noqa: ASYNC220 (fork and exec: a millisecond)
            [
                sys.executable,
                "-m",
                MODULE,
                "--control-fd",
                str(theirs.fileno()),
                *gateway_arguments(options),
            ],
            pass_fds=[theirs.fileno()],
        )
    theirs.close()  # so that the gateway's death reads as end-of-file here
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        report = (await asyncio.wait_for(reader.readline(), START_TIMEOUT_S)).decode().strip()
    except TimeoutError:
        report = f"failed did not start within {START_TIMEOUT_S:.0f}s"
    outcome, _, detail = report.partition(" ")
    if outcome != "listening":
        writer.close()
        if process.poll() is None:
            process.kill()
        code = await asyncio.to_thread(process.wait)
        raise StartupError(detail or f"the REST gateway exited with code {code} at start")
    return GatewayProcess(process, (reader, writer), int(detail), stop)


def gateway_arguments(options: GatewayOptions) -> list[str]:
    """The command line of a gateway process with these options (after --control-fd)."""
    argv = ["--grpc-target", options.grpc_target, "--host", options.host]
    argv += ["--port", str(options.port), "--grace", str(options.grace)]
    argv += ["--log-level", options.log_level, "--log-format", options.log_format]
    limits = options.limits
    argv += ["--keepalive", str(limits.keepalive_seconds)]
    argv += ["--header-timeout", str(limits.header_timeout_seconds)]
    argv += ["--max-connections", str(limits.max_connections)]
    argv += ["--cors-origins", ",".join(options.cors_origins)]
    argv += [] if options.access_log else ["--no-access-log"]
    argv += ["--event-loop", options.event_loop]
    return argv + (["--share-port"] if options.share_port else [])


def _options(argv: list[str]) -> tuple[GatewayOptions, int]:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--grpc-target", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grace", type=float, required=True)
    parser.add_argument("--log-level", required=True)
    parser.add_argument("--log-format", choices=["text", "json"], required=True)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    parser.add_argument("--share-port", action="store_true")
    parser.add_argument("--event-loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--keepalive", type=float, required=True)
    parser.add_argument("--header-timeout", type=float, required=True)
    parser.add_argument("--max-connections", type=int, required=True)
    parser.add_argument("--cors-origins", default="")
    parsed = parser.parse_args(argv)
    options = GatewayOptions(
        parsed.grpc_target,
        parsed.host,
        parsed.port,
        parsed.grace,
        parsed.share_port,
        parsed.log_level,
        HttpLimits(parsed.keepalive, parsed.header_timeout, parsed.max_connections),
        tuple(origin for origin in parsed.cors_origins.split(",") if origin),
        parsed.log_format,
        parsed.access_log,
        parsed.event_loop,
    )
    return options, parsed.control_fd


async def _run(options: GatewayOptions, control: socket.socket) -> None:
    # Here, not at the top: the server imports this module to start the gateway, and aiohttp
    # costs it half a second it does not need.
    from customer_segments.gateway.app import start_gateway

    # SIGINT from a terminal reaches the whole process group: the gateway drains then, too.
    stop = stop_requested()
    try:
        gateway = await start_gateway(
            options.grpc_target,
            options.host,
            options.port,
            options.grace,
            share_port=options.share_port,
            limits=options.limits,
            cors_origins=options.cors_origins,
            access_log=options.access_log,
        )
    except OSError as error:
        reason = error.strerror or str(error)
        message = port_taken(options.host, options.port, "REST", "--http-port", reason)
        control.sendall(f"failed {message}\n".encode())
        return
    control.sendall(f"listening {gateway.port}\n".encode())
    loop = asyncio.get_running_loop()
    server_gone = asyncio.Event()

    def on_server_gone() -> None:
        # Readable means end-of-file (the server closed its end, or died), and stays so.
        loop.remove_reader(control.fileno())
        server_gone.set()
        stop.set()

    loop.add_reader(control.fileno(), on_server_gone)
    try:
        await stop.wait()
        if not server_gone.is_set():
            loop.remove_reader(control.fileno())
            with contextlib.suppress(OSError):  # the server may be gone meanwhile
                control.sendall(STOPPING)
    finally:
        await gateway.stop()
        hold_stop_signals()  # a late signal, once the loop's handlers are gone, must not kill


def main(argv: list[str]) -> None:
    options, control_fd = _options(argv)
    configure_logging(options.log_level, options.log_format, process="gateway")
    with socket.socket(fileno=control_fd) as control, traced("gateway"):
        event_loop.run(_run(options, control), options.event_loop)


if __name__ == "__main__":
    main(sys.argv[1:])
