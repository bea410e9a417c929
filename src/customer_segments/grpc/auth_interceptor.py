"""Authentication of every call, for internal callers and the REST gateway alike: the bearer
token is verified and the principal it names is handed to the servicer, which passes it to the
use case. Who may do what is decided by the use cases (services/authorization.py), which also
keep the audit log of writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc

from customer_segments import metrics
from customer_segments.auth.tokens import TokenVerifier
from customer_segments.domain.errors import Unauthenticated
from customer_segments.domain.principal import Principal
from customer_segments.grpc.interceptors import Context, Handler, WrappingInterceptor

# Operators and orchestrators call these without a token; they show no tenant data.
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

# A client stream must bring its first message (tenant and segment) this soon; a stream that
# never does would otherwise hold its slot and memory for as long as the client likes.
FIRST_MESSAGE_TIMEOUT_SECONDS = 20.0

# Each call runs in a task of its own, so a value set for one call is never seen by another.
_caller: ContextVar[Principal] = ContextVar("caller")


def caller() -> Principal:
    """The verified principal of the current call (LookupError outside an authenticated call)."""
    return _caller.get()


class AuthInterceptor(WrappingInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        first_message_timeout: float = FIRST_MESSAGE_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.verifier = verifier
        self.first_message_timeout = first_message_timeout
        self._metrics = metrics.instruments()
        # method -> the handler that refuses it without reading its request
        self._refusals: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """A call without a valid token is refused before its request is read: gRPC reads a
        unary request whole before any handler runs, so anyone could otherwise make the
        server hold max-receive-size messages without a token. (The verdict is cached, so the
        handler's own check of an accepted token is a dictionary lookup.)"""
        handler = await super().intercept_service(continuation, handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in self._refusals:
            return handler
        authorization = _authorization(handler_call_details.invocation_metadata)
        try:
            await self.verifier.verify(authorization)
        except Unauthenticated:
            if self._metrics is not None:
                self._metrics.token_refused.inc()
            return self._refusals[method]
        if self._metrics is not None:  # here, once per call: the handler's check is cached
            self._metrics.token_accepted.inc()
        return handler

    def wrap(self, handler: Handler, method: str) -> Handler:
        service, _, operation = method.lstrip("/").rpartition("/")
        if service in PUBLIC_SERVICES:
            return handler
        self._refusals[method] = self._refusal(handler)
        return self._wrap(handler, operation)

    def _refusal(self, handler: Handler) -> Handler:
        """A handler of the streaming-request kind, whose behaviour does not wait for a
        message: it verifies the token again, for the reason to give, and fails with it."""
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }

        async def refuse(_requests: AsyncIterable[Any], context: Context) -> None:
            await self._authenticate(context)
            raise Unauthenticated("refused")  # accepted now: a key just reloaded; retry

        if handler.unary_unary or handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(refuse, **codec)

        async def refuse_streaming(
            requests: AsyncIterable[Any], context: Context
        ) -> AsyncIterator[Any]:
            await refuse(requests, context)
            yield  # an async generator, as the streaming-response wrappers expect

        return grpc.stream_stream_rpc_method_handler(refuse_streaming, **codec)

    async def _authenticate(self, context: Context) -> None:
        # The request id is the access log interceptor's (it runs first).
        _caller.set(await self.verifier.verify(_authorization(context.invocation_metadata())))

    def _wrap(self, handler: Handler, operation: str) -> Handler:
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            unary_behavior: Any = handler.unary_unary  # grpc-stubs types these as sync

            async def unary_unary(request: Any, context: Context) -> Any:
                await self._authenticate(context)
                return await unary_behavior(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **codec)
        if handler.unary_stream:
            streaming_behavior: Any = handler.unary_stream  # grpc-stubs types these as sync

            async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                await self._authenticate(context)
                async for response in streaming_behavior(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **codec)
        if handler.stream_stream:
            bidi_behavior: Any = handler.stream_stream  # grpc-stubs types these as sync

            async def stream_stream(
                requests: AsyncIterable[Any], context: Context
            ) -> AsyncIterator[Any]:
                # The first message is read before any refusal: a client still writing it when
                # the call ends sees "Internal error from Core" (INTERNAL) instead of the
                # refusal. Unary requests are read whole before this point anyway. (A call
                # without a valid token never gets here: see intercept_service.) It must come
                # within first_message_timeout, or the call holds its slot for nothing.
                messages = aiter(requests)
                try:
                    first = await asyncio.wait_for(
                        anext(messages, None), self.first_message_timeout
                    )
                except TimeoutError:
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"no request message within {self.first_message_timeout:g} s",
                    )
                await self._authenticate(context)
                async for response in bidi_behavior(_again(first, messages), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(stream_stream, **codec)
        raise TypeError(f"{operation}: client-streaming RPCs are not authenticated yet")


def _authorization(metadata: Any) -> str | None:
    """The first `authorization` of a call's metadata (None when absent)."""
    for name, value in metadata or ():
        if name == "authorization":
            return value if isinstance(value, str) else None
    return None


async def _again(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The stream from its first message, which was read already (None: there was none)."""
    if first is None:
        return
    yield first
    async for request in rest:
        yield request
