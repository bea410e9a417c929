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
import logging
import os
import socket
import sys
from typing import NamedTuple

from customer_segments.gateway.app import start_gateway
from customer_segments.logs import configure_logging
from customer_segments.shutdown import stop_requested

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


class GatewayProcess:
    """A started gateway process; `port` is the bound one. If it exits while `stop` is not
    set, `died` turns true and `stop` is set."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        control: socket.socket,
        port: int,
        stop: asyncio.Event,
    ) -> None:
        self._process = process
        self._control = control
        self.port = port
        self.died = False
        loop = asyncio.get_running_loop()

        def exited() -> None:
            # The gateway sends nothing after "listening": readable means it is gone.
            loop.remove_reader(control.fileno())
            # Ctrl-C reaches both processes: a gateway that stops for it has not died.
            if not stop.is_set():
                self.died = True
                stop.set()

        loop.add_reader(control.fileno(), exited)

    async def stop(self, grace: float) -> None:
        """Closing the socket asks the gateway to stop; it drains its requests for `grace`."""
        if not self.died:
            asyncio.get_running_loop().remove_reader(self._control.fileno())
        self._control.close()
        try:
            await asyncio.wait_for(self._process.wait(), grace + 5)
        except TimeoutError:
            log.warning("the gateway process did not stop in time; killing it")
            self._process.kill()
            await self._process.wait()


async def start_gateway_process(options: GatewayOptions, stop: asyncio.Event) -> GatewayProcess:
    """Returns once the gateway listens; raises OSError when it cannot (port taken...)."""
    ours, theirs = socket.socketpair()
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", MODULE, "--control-fd", str(theirs.fileno()), *_argv(options)],
        pass_fds=[theirs.fileno()],
    )
    theirs.close()  # so that the gateway's death reads as end-of-file here
    try:
        report = await asyncio.wait_for(_first_line(ours), START_TIMEOUT_S)
    except TimeoutError:
        report = f"failed did not start within {START_TIMEOUT_S:.0f}s"
    outcome, _, detail = report.partition(" ")
    if outcome != "listening":
        ours.close()
        if process.returncode is None:
            process.kill()
        code = await process.wait()
        raise OSError(f"the REST gateway cannot start: {detail or f'it exited with code {code}'}")
    return GatewayProcess(process, ours, int(detail), stop)


async def _first_line(connection: socket.socket) -> str:
    """What the gateway reports, or "" if it exits first."""
    connection.setblocking(False)
    received = b""
    loop = asyncio.get_running_loop()
    while not received.endswith(b"\n"):
        chunk = await loop.sock_recv(connection, 4096)
        if not chunk:
            return ""
        received += chunk
    return received.decode().strip()


def _argv(options: GatewayOptions) -> list[str]:
    argv = ["--grpc-target", options.grpc_target, "--host", options.host]
    argv += ["--port", str(options.port), "--grace", str(options.grace)]
    argv += ["--log-level", options.log_level]
    return argv + (["--share-port"] if options.share_port else [])


def _options(argv: list[str]) -> tuple[GatewayOptions, int]:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--grpc-target", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grace", type=float, required=True)
    parser.add_argument("--log-level", required=True)
    parser.add_argument("--share-port", action="store_true")
    parsed = parser.parse_args(argv)
    options = GatewayOptions(
        parsed.grpc_target,
        parsed.host,
        parsed.port,
        parsed.grace,
        parsed.share_port,
        parsed.log_level,
    )
    return options, parsed.control_fd


async def _run(options: GatewayOptions, control: socket.socket) -> None:
    # SIGINT from a terminal reaches the whole process group: the gateway drains then, too.
    stop = stop_requested()
    try:
        gateway = await start_gateway(
            options.grpc_target,
            options.host,
            options.port,
            options.grace,
            share_port=options.share_port,
        )
    except OSError as error:
        control.sendall(f"failed {error}\n".encode())
        return
    control.sendall(f"listening {gateway.port}\n".encode())
    loop = asyncio.get_running_loop()

    def server_gone() -> None:
        # Readable means end-of-file (the server closed its end, or died), and stays so.
        loop.remove_reader(control.fileno())
        stop.set()

    loop.add_reader(control.fileno(), server_gone)
    try:
        await stop.wait()
    finally:
        await gateway.stop()


def main(argv: list[str]) -> None:
    options, control_fd = _options(argv)
    configure_logging(
        options.log_level,
        f"%(asctime)s %(levelname)s [gateway {os.getpid()}] %(name)s: %(message)s",
    )
    with socket.socket(fileno=control_fd) as control:
        asyncio.run(_run(options, control))


if __name__ == "__main__":
    main(sys.argv[1:])
