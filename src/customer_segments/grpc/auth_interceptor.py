"""Authentication and authorization of every call, for internal callers and the REST gateway
alike: the bearer token is verified, the operation's scopes and the request's tenant are
checked, and the verified principal is handed to the servicer. Writes are logged here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc

from customer_segments.auth.tokens import TokenVerifier
from customer_segments.domain.errors import Unauthenticated
from customer_segments.domain.principal import Principal
from customer_segments.grpc.interceptors import Context, Handler, WrappingInterceptor
from customer_segments.services.authorization import (
    WRITE_OPERATIONS,
    require_scope,
    require_tenant,
)

audit_log = logging.getLogger("customer_segments.audit")


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
    """The verified principal of the current call (LookupError outside an authorized call)."""
    return _caller.get()


def _metadata(context: Context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


class AuthInterceptor(WrappingInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        first_message_timeout: float = FIRST_MESSAGE_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.verifier = verifier
        self.first_message_timeout = first_message_timeout
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
            return self._refusals[method]
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

    async def _authenticate(self, context: Context) -> Principal:
        principal = await self.verifier.verify(_metadata(context, "authorization"))
        _caller.set(principal)
        return principal

    def _wrap(self, handler: Handler, operation: str) -> Handler:
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            unary_behavior: Any = handler.unary_unary  # grpc-stubs types these as sync

            async def unary_unary(request: Any, context: Context) -> Any:
                principal = await self._authenticate(context)
                with _Audit(operation, principal, context, request):
                    require_scope(principal, operation)
                    require_tenant(principal, request.tenant)
                    return await unary_behavior(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **codec)
        if handler.unary_stream:
            streaming_behavior: Any = handler.unary_stream  # grpc-stubs types these as sync

            async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                principal = await self._authenticate(context)
                with _Audit(operation, principal, context, request):
                    require_scope(principal, operation)
                    require_tenant(principal, request.tenant)
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
                principal = await self._authenticate(context)
                with _Audit(operation, principal, context, first):
                    require_scope(principal, operation)
                    if first is None:
                        return
                    require_tenant(principal, first.tenant)
                    checked = _tenant_checked(first, messages, principal)
                    async for response in bidi_behavior(checked, context):
                        yield response

            return grpc.stream_stream_rpc_method_handler(stream_stream, **codec)
        raise TypeError(f"{operation}: client-streaming RPCs are not authorized yet")


def _authorization(metadata: Any) -> str | None:
    """The first `authorization` of a call's metadata, before its handler runs."""
    for name, value in metadata or ():
        if name == "authorization":
            return value if isinstance(value, str) else None
    return None


async def _tenant_checked(
    first: Any, rest: AsyncIterator[Any], principal: Principal
) -> AsyncIterator[Any]:
    """The stream again, each later message naming the token's tenant or none."""
    yield first
    async for request in rest:
        if request.tenant:
            require_tenant(principal, request.tenant)
        yield request


class _Audit:
    """Logs a write, or an attempt refused with PermissionDenied, with who made it (never the
    token) and how it ended. Values a caller chose are logged with repr(), so that they cannot
    forge log lines."""

    def __init__(
        self, operation: str, principal: Principal, context: Context, request: Any
    ) -> None:
        self.enabled = operation in WRITE_OPERATIONS
        if not self.enabled:
            return  # reads are the hot path: nothing to prepare
        self.operation = operation
        self.principal = principal
        self.context = context
        segment_id = getattr(request, "segment_id", None)
        if segment_id is None and hasattr(request, "segment"):
            segment_id = request.segment.id  # CreateSegment: the id is in the segment
        self.segment_id: str | None = segment_id
        # Where a token of one tenant tried to write into another.
        requested = getattr(request, "tenant", principal.tenant)
        self.other_tenant = (
            f" requested_tenant={requested!r}" if requested != principal.tenant else ""
        )

    def __enter__(self) -> None:
        return None

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if not self.enabled:
            return
        audit_log.info(
            "write %s tenant=%s%s subject=%r request_id=%r segment=%r outcome=%s",
            self.operation,
            self.principal.tenant,
            self.other_tenant,
            self.principal.subject,
            _metadata(self.context, "x-request-id"),
            self.segment_id,
            "ok" if error_type is None else error_type.__name__,
        )
