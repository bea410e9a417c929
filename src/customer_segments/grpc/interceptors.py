"""What the server interceptors share: the wrapping of handlers, and the error status of a call
(a domain error's, or INTERNAL for anything else; call_interceptor.py applies it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

from customer_segments.domain.errors import DomainError, Unauthenticated
from customer_segments.grpc.errors import internal_status, to_status
from customer_segments.logs import request_id

log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


# Every call's request id, echoed in its trailing metadata (see access_log_interceptor.py).
REQUEST_ID_KEY = "x-request-id"


def with_request_id(trailing_metadata: Any) -> tuple[tuple[str, Any], ...]:
    """`trailing_metadata` and the call's request id: abort() replaces what
    set_trailing_metadata() gave, so an error's trailers must carry the id themselves."""
    given = request_id.get()
    echoed = ((REQUEST_ID_KEY, given),) if given is not None else ()
    return (*(trailing_metadata or ()), *echoed)


async def abort_with(context: Context, method: str, error: Exception) -> None:
    if isinstance(error, DomainError):
        status = to_status(error)
    else:
        # Never show a caller a stack trace, SQL or another tenant's data: log it, say INTERNAL.
        log.error("unexpected error in %s", method, exc_info=error)
        status = internal_status()
    await context.abort(status.code, status.details, with_request_id(status.trailing_metadata))


# A client still writing when its stream is refused sees "Internal error from Core"
# (INTERNAL) instead of the refusal: grpc.aio's client marks its failed write that way (an
# import whose token expired would not learn why). So the rest of a refused stream is read and
# dropped first, for at most this long and this many messages, which a client that never stops
# writing cannot stretch. A caller without a valid token gets much less: its messages are what
# the auth interceptor refuses to read at all.
DRAIN_SECONDS = 2.0
DRAIN_MESSAGES = 10_000
UNAUTHENTICATED_DRAIN_SECONDS = 0.25
UNAUTHENTICATED_DRAIN_MESSAGES = 16


async def drain(requests: AsyncIterator[Any], error: Exception) -> None:
    seconds, messages = (
        (UNAUTHENTICATED_DRAIN_SECONDS, UNAUTHENTICATED_DRAIN_MESSAGES)
        if isinstance(error, Unauthenticated)
        else (DRAIN_SECONDS, DRAIN_MESSAGES)
    )
    with contextlib.suppress(Exception):
        async with asyncio.timeout(seconds):
            for _ in range(messages):
                if await anext(requests, None) is None:
                    return


class WrappingInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """An interceptor that wraps each method's handler; subclasses say how in `wrap`."""

    def __init__(self) -> None:
        # Wrapping is done once per registered handler, not once per call (hot path).
        self._wrapped: dict[int, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        cached = self._wrapped.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(handler, handler_call_details.method)
        self._wrapped[id(handler)] = (handler, wrapped)
        return wrapped

    def wrap(self, handler: Handler, method: str) -> Handler:
        raise NotImplementedError


Awaited = Callable[..., Awaitable[Any]]
Streaming = Callable[..., AsyncIterator[Any]]


def behavior_of(handler: Handler) -> Any:
    """The function a handler calls, whatever its kind (grpc-stubs types them as sync)."""
    return (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )


def same_kind(handler: Handler, behavior: Any) -> Handler:
    """A handler of the kind of `handler`, with its codec, that calls `behavior` instead."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(behavior, **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(behavior, **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(behavior, **codec)
    return grpc.stream_stream_rpc_method_handler(behavior, **codec)
