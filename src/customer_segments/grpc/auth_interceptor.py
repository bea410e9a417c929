"""Authentication and authorization of every call, for internal callers and the REST gateway
alike: the bearer token is verified, the operation's scopes and the request's tenant are
checked, and the verified principal is handed to the servicer. Writes are logged here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextvars import ContextVar
from typing import Any

import grpc

from customer_segments.auth.tokens import TokenVerifier
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
    def __init__(self, verifier: TokenVerifier) -> None:
        super().__init__()
        self.verifier = verifier

    def wrap(self, handler: Handler, method: str) -> Handler:
        service, _, operation = method.lstrip("/").rpartition("/")
        if service in PUBLIC_SERVICES:
            return handler
        return self._wrap(handler, operation)

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
                # refusal. Unary requests are read whole before this point anyway.
                messages = aiter(requests)
                first = await anext(messages, None)
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
