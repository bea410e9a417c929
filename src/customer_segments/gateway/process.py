"""The gateway of `serve`, in a process of its own.

In the server's process the gateway shared one core (and one GIL) with the gRPC server it
calls: a REST call paid for aiohttp, a gRPC client and the gRPC server on the same core, and
REST GET reached about 55% of the same call over gRPC. In a process of its own it runs beside
the server instead of in turn with it (measured: 67-78%).

The two processes are tied by a pipe: the gateway reports on it whether it is listening, and
stops when it closes, which happens when the server stops it and also when the server dies,
so a gateway never outlives its server. The server, in turn, stops when the gateway dies.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import NamedTuple

from customer_segments.gateway.app import start_gateway
from customer_segments.grpc.server import stop_requested

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0


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
        process: multiprocessing.process.BaseProcess,
        pipe: Connection,
        port: int,
        stop: asyncio.Event,
    ) -> None:
        self._process = process
        self._pipe = pipe
        self.port = port
        self.died = False

        def exited() -> None:
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            # Ctrl-C reaches both processes: a gateway that stops for it has not died.
            if not stop.is_set():
                self.died = True
                stop.set()

        asyncio.get_running_loop().add_reader(pipe.fileno(), exited)

    async def stop(self, grace: float) -> None:
        """Closing the pipe asks the gateway to stop; it drains its requests for `grace`."""
        if not self.died:
            asyncio.get_running_loop().remove_reader(self._pipe.fileno())
        self._pipe.close()
        await asyncio.to_thread(self._process.join, grace + 5)
        if self._process.is_alive():
            log.warning("the gateway process did not stop in time; killing it")
            self._process.kill()
            await asyncio.to_thread(self._process.join)


async def start_gateway_process(options: GatewayOptions, stop: asyncio.Event) -> GatewayProcess:
    """Returns once the gateway listens; raises OSError when it cannot (port taken...)."""
    # Spawned, not forked: a forked child would inherit gRPC's threads in an unknown state.
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_gateway_main, args=(options, theirs), name="gateway", daemon=True
    )
    process.start()
    theirs.close()  # so that the gateway's death reads as end-of-file here
    try:
        if not await asyncio.to_thread(ours.poll, START_TIMEOUT_S):
            raise OSError(f"the REST gateway did not start within {START_TIMEOUT_S:.0f}s")
        outcome, detail = ours.recv()
    except (OSError, EOFError) as error:
        ours.close()
        process.kill()
        await asyncio.to_thread(process.join)
        if isinstance(error, EOFError):
            raise OSError(f"the REST gateway exited with code {process.exitcode}") from None
        raise
    if outcome != "listening":
        ours.close()
        await asyncio.to_thread(process.join)
        raise OSError(f"the REST gateway cannot start: {detail}")
    return GatewayProcess(process, ours, int(detail), stop)


def _gateway_main(options: GatewayOptions, pipe: Connection) -> None:
    logging.basicConfig(
        level=options.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [gateway {os.getpid()}] %(name)s: %(message)s",
    )
    asyncio.run(_run(options, pipe))


async def _run(options: GatewayOptions, pipe: Connection) -> None:
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
        pipe.send(("failed", str(error)))
        return
    pipe.send(("listening", gateway.port))
    loop = asyncio.get_running_loop()

    def server_gone() -> None:
        # Readable means end-of-file (the server closed its end, or died), and stays so.
        loop.remove_reader(pipe.fileno())
        stop.set()

    loop.add_reader(pipe.fileno(), server_gone)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
