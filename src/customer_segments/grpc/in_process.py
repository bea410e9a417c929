"""The server's own gRPC methods, called in its process: the channel of `serve`'s REST gateway.

The gateway speaks to the service only through the generated stubs, so that it holds no rule
of the service and can also run alone in front of a remote server (`customer-segments
gateway`). Inside `serve`, it used to reach the server through a socket, from a process of its
own: a REST call then paid for a gRPC client call, HTTP/2 both ways, the messages' encoding and
decoding and a gRPC server call, on top of aiohttp (REST GET: about 1,150 us of CPU over both
processes, against 620 for the same call over gRPC).

This channel hands the gateway's request message to the method's handler as the server would,
through the same interceptors in the same order (the server span, the request id, the access
line, metrics and the error status, the token check): what a caller may do and what operators
see are the same. What it leaves out is the transport: no socket, no encoding, no HTTP/2 flow
control, no max_concurrent_rpcs (the gateway's own connection limit applies). Each call runs
in a task of its own, as a server call does, so that what the interceptors set in context
variables (the caller, the request id, the current span) stays in the call. Failures reach
the gateway as the AioRpcError a real channel raises, with the same status, details and
trailing metadata (the google.rpc.Status details the gateway turns into REST errors).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, cast

import grpc
from google.protobuf.message import Message
from grpc import aio

from customer_segments import tracing
from customer_segments.grpc.interceptors import Handler

log = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str | bytes], ...]
# What a call to this channel shows as its peer (access lines, spans): no socket is involved.
PEER = "in-process"


class _CallDetails(NamedTuple):
    """grpc.HandlerCallDetails, as the server hands it to interceptors."""

    method: str
    invocation_metadata: Metadata


class MethodRegistry:
    """Where the generated `add_*Servicer_to_server` functions register a service: on `server`,
    and here, by full method name, for the in-process channel."""

    def __init__(self, server: aio.Server) -> None:
        self._server = server
        self.handlers: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self._server.add_registered_method_handlers(service, handlers)  # type: ignore[attr-defined]
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler

    def as_server(self) -> aio.Server:
        """This registry where the generated functions expect a server: they call only the
        two methods above."""
        return cast(aio.Server, self)


class _Aborted(aio.AbortError):
    """What `abort` raises, as grpc.aio's does: the interceptors let an AbortError through."""


class InProcessContext:
    """The parts of grpc.aio.ServicerContext the interceptors and servicers use."""

    def __init__(self, metadata: Metadata, deadline: float | None) -> None:
        self._metadata = metadata
        self.deadline = deadline
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: Metadata = ()

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return PEER

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._trailing = tuple(metadata)

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    async def send_initial_metadata(self, _metadata: Sequence[tuple[str, str | bytes]]) -> None:
        """Nothing to send: the gateway reads trailing metadata only."""

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        # As grpc.aio's: without trailers of its own, the abort keeps those already set.
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        self._code, self._details = code, details
        raise _Aborted()

    def failure(self) -> aio.AioRpcError:
        return _error(self._code or grpc.StatusCode.UNKNOWN, self._details, self._trailing)

    def failed(self) -> bool:
        return self._code is not None and self._code != grpc.StatusCode.OK


def _error(code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(*trailing), details, None)


def behavior(function: Any) -> Any:
    """A handler's coroutine function: grpc-stubs types handlers' functions as synchronous and
    their context as grpc.aio's; these are grpc.aio's coroutine functions, given ours."""
    return function


async def _one(message: Message) -> AsyncIterator[Message]:
    """A unary request as the request stream of a client-streaming handler (the auth
    interceptor refuses a call without a valid token with one)."""
    yield message


class InProcessChannel:
    """A grpc.aio.Channel, as far as the generated stubs and the gateway use one, whose calls
    run the server's handlers in this process; unary-unary and unary-stream methods only (the
    gateway calls no other kind)."""

    def __init__(
        self, interceptors: Sequence[Any], handlers: dict[str, Handler], max_request_bytes: int
    ) -> None:
        """`interceptors` and `handlers`: the server's; `max_request_bytes`: the largest request
        message (the send limit of a gateway's real channel)."""
        self._interceptors = tuple(interceptors)
        self._max_request_bytes = max_request_bytes
        self._handlers = handlers
        self._closed = False
        self._client_spans = tracing.in_process_client_spans()

    def unary_unary(self, method: str, *_codec: Any, **_options: Any) -> _Method:
        return _Method(self.call, method)

    def unary_stream(self, method: str, *_codec: Any, **_options: Any) -> _Method:
        return _Method(self.stream, method)

    def stream_unary(self, method: str, *_codec: Any, **_options: Any) -> _Unsupported:
        return _Unsupported(method)

    def stream_stream(self, method: str, *_codec: Any, **_options: Any) -> _Unsupported:
        return _Unsupported(method)

    def as_channel(self) -> aio.Channel:
        """This channel where the gateway expects grpc.aio's: it uses only what is here."""
        return cast(aio.Channel, self)

    async def close(self, _grace: float | None = None) -> None:
        """Calls made from now on fail UNAVAILABLE, as on a closed channel."""
        self._closed = True

    async def _handler(self, details: _CallDetails, index: int = 0) -> Handler | None:
        """The handler the server would run: its interceptors' chain, as grpc.aio runs it."""
        if index == len(self._interceptors):
            return self._handlers.get(details.method)
        handler: Handler | None = await self._interceptors[index].intercept_service(
            partial(self._handler, index=index + 1), details
        )
        return handler

    def _started(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]] | None,
        timeout: float | None,
    ) -> tuple[_CallDetails, InProcessContext]:
        if self._closed:
            raise _error(grpc.StatusCode.UNAVAILABLE, "the channel is closed")
        # The send limit of the gateway's channel (limits.py), in gRPC's words, which the
        # gateway tells from the server's own refusals (413 for a request too large).
        size = request.ByteSize()
        if size > self._max_request_bytes:
            raise _error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({size} vs. {self._max_request_bytes})",
            )
        given: Metadata = tuple(metadata or ())
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        return _CallDetails(method, given), InProcessContext(given, deadline)

    async def call(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]] | None,
        seconds: float | None,
    ) -> Any:
        """A unary call, within `seconds` (its deadline) if not None."""
        details, context = self._started(method, request, metadata, seconds)
        task = asyncio.create_task(self._call(details, context, request))
        try:
            async with asyncio.timeout(seconds) as within:
                return await task
        except TimeoutError:
            if within.expired():
                raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
            raise

    async def _call(
        self, details: _CallDetails, context: InProcessContext, request: Message
    ) -> Any:
        if self._client_spans is None:
            return await self._run(details, context, request)
        # The client span the gateway's channel would make, its context carried as a real
        # channel carries it (in metadata), for the server span to continue.
        with self._client_spans.span(details.method) as carried:
            metadata = (*details.invocation_metadata, *carried)
            context = InProcessContext(metadata, context.deadline)
            return await self._run(details._replace(invocation_metadata=metadata), context, request)

    async def _run(self, details: _CallDetails, context: InProcessContext, request: Message) -> Any:
        handler = await self._handler(details)
        if handler is None:
            raise _error(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        try:
            if handler.unary_unary is not None:
                response = await behavior(handler.unary_unary)(request, context)
            elif handler.stream_unary is not None:
                response = await behavior(handler.stream_unary)(_one(request), context)
            else:
                raise _error(grpc.StatusCode.UNIMPLEMENTED, f"{details.method} is not unary")
        except aio.AbortError:
            raise context.failure() from None
        except Exception:
            # The call interceptor turns every error into a status; this is a bug of ours.
            log.exception("in-process call %s failed", details.method)
            raise _error(grpc.StatusCode.UNKNOWN, "Unexpected error") from None
        if context.failed():
            raise context.failure()
        return response

    async def stream(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]] | None,
        seconds: float | None,
    ) -> AsyncIterator[Any]:
        """A unary-stream call, within `seconds` (its deadline) if not None."""
        details, context = self._started(method, request, metadata, seconds)
        # One answer at a time: the handler runs ahead of the gateway by one message at most.
        answers: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue(maxsize=1)
        done = object()

        async def produce() -> None:
            try:
                handler = await self._handler(details)
                if handler is not None and handler.unary_stream is not None:
                    streamed = behavior(handler.unary_stream)(request, context)
                elif handler is not None and handler.stream_stream is not None:
                    # The auth interceptor's refusal of a call without a valid token.
                    streamed = behavior(handler.stream_stream)(_one(request), context)
                else:
                    raise _error(grpc.StatusCode.UNIMPLEMENTED, f"{details.method}: no such stream")
                async for answer in streamed:
                    await answers.put((answer, None))
                if context.failed():
                    raise context.failure()
                await answers.put((done, None))
            except aio.AbortError:
                await answers.put((done, context.failure()))
            except aio.AioRpcError as error:
                await answers.put((done, error))
            except Exception:
                log.exception("in-process call %s failed", details.method)
                await answers.put((done, _error(grpc.StatusCode.UNKNOWN, "Unexpected error")))

        task = asyncio.create_task(produce())
        try:
            async with asyncio.timeout(seconds) as within:
                while True:
                    answer, error = await answers.get()
                    if error is not None:
                        raise error
                    if answer is done:
                        return
                    yield answer
        except TimeoutError:
            if within.expired():
                raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
            raise
        finally:
            task.cancel()


class _Method:
    """A multicallable of the channel: `run` is its call or its stream."""

    def __init__(self, run: Callable[..., Any], method: str) -> None:
        self._run = run
        self._method = method

    def __call__(
        self,
        request: Message,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        **_options: Any,
    ) -> Any:
        return self._run(self._method, request, metadata, timeout)


class _Unsupported:
    def __init__(self, method: str) -> None:
        self._method = method

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        raise _error(grpc.StatusCode.UNIMPLEMENTED, f"{self._method}: not callable in process")
