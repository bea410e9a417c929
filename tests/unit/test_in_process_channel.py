"""The in-process channel (grpc/in_process.py) against handlers of its own: what a real
channel does with a call's deadline, abort, trailing metadata, request size, streams and the
interceptor chain, it does too. The gateway's answers over it, against a real channel's, are
in tests/integration/test_gateway_in_process.py."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from grpc import aio

from customer_segments.grpc.in_process import PEER, InProcessChannel, MethodRegistry

pytestmark = pytest.mark.asyncio

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def echo(request: StringValue, context: Any) -> StringValue:
    SEEN.set(request.value)  # a call's context variables stay in the call
    metadata = dict(context.invocation_metadata())
    context.set_trailing_metadata((("x-echo", metadata.get("x-given", "")),))
    return StringValue(value=f"{request.value} from {context.peer()}")


async def refuse(request: StringValue, context: Any) -> StringValue:
    context.set_trailing_metadata((("x-kept", "yes"),))
    await context.abort(grpc.StatusCode.NOT_FOUND, f"no {request.value}")
    raise AssertionError("abort returns no more than grpc.aio's")


async def slow(request: StringValue, context: Any) -> StringValue:
    await asyncio.sleep(10)
    return request


async def broken(request: StringValue, context: Any) -> StringValue:
    raise RuntimeError("a bug")


async def count(request: StringValue, context: Any) -> AsyncIterator[StringValue]:
    for n in range(3):
        yield StringValue(value=f"{request.value}{n}")
    if request.value == "fail":
        await context.abort(grpc.StatusCode.ABORTED, "stopped after 3")


async def refused_stream_unary(requests: AsyncIterator[StringValue], context: Any) -> StringValue:
    first = await anext(requests)
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"refused {first.value}")
    raise AssertionError


async def refused_stream_stream(
    requests: AsyncIterator[StringValue], context: Any
) -> AsyncIterator[StringValue]:
    first = await anext(requests)
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"refused {first.value}")
    yield first


class Counting(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Sees every call, as a server interceptor does, and adds a trailer through a wrapper."""

    def __init__(self, name: str, order: list[str]) -> None:
        self.name = name
        self.order = order

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        self.order.append(f"{self.name} {details.method}")
        return await continuation(details)


def channel(order: list[str] | None = None, max_request_bytes: int = 1000) -> InProcessChannel:
    handlers = {
        "/t.S/Echo": grpc.unary_unary_rpc_method_handler(echo),
        "/t.S/Refuse": grpc.unary_unary_rpc_method_handler(refuse),
        "/t.S/Slow": grpc.unary_unary_rpc_method_handler(slow),
        "/t.S/Broken": grpc.unary_unary_rpc_method_handler(broken),
        "/t.S/Count": grpc.unary_stream_rpc_method_handler(count),
        "/t.S/Refused": grpc.stream_unary_rpc_method_handler(refused_stream_unary),
        "/t.S/RefusedStream": grpc.stream_stream_rpc_method_handler(refused_stream_stream),
    }
    interceptors = [Counting("outer", order), Counting("inner", order)] if order is not None else []
    return InProcessChannel(interceptors, handlers, max_request_bytes)


async def test_a_call_runs_the_handler_through_the_interceptors_in_order() -> None:
    order: list[str] = []
    call = channel(order).unary_unary("/t.S/Echo")
    answer = await call(StringValue(value="hi"), metadata=[("x-given", "1")], timeout=5)
    assert answer.value == f"hi from {PEER}"
    assert order == ["outer /t.S/Echo", "inner /t.S/Echo"]
    assert SEEN.get() == "unset"


async def test_an_abort_is_the_aio_rpc_error_of_a_real_channel() -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await channel().unary_unary("/t.S/Refuse")(StringValue(value="gold"), timeout=5)
    error = raised.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no gold"
    # Trailers set before an abort without trailers of its own are kept, as grpc.aio does.
    trailers: list[Any] = list(error.trailing_metadata())  # grpc-stubs: a _Metadatum list
    assert trailers == [("x-kept", "yes")]


async def test_a_deadline_ends_the_call_with_deadline_exceeded() -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await channel().unary_unary("/t.S/Slow")(StringValue(value="x"), timeout=0.05)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_an_unexpected_error_is_unknown_without_its_words() -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await channel().unary_unary("/t.S/Broken")(StringValue(value="x"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNKNOWN
    assert "a bug" not in (raised.value.details() or "")


async def test_an_unknown_method_is_unimplemented() -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await channel().unary_unary("/t.S/Nope")(StringValue(value="x"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_request_over_the_send_limit_is_refused_in_grpcs_words() -> None:
    request = StringValue(value="x" * 2000)
    with pytest.raises(aio.AioRpcError) as raised:
        await channel(max_request_bytes=1000).unary_unary("/t.S/Echo")(request, timeout=5)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.details() == f"Sent message larger than max ({request.ByteSize()} vs. 1000)"


async def test_a_stream_unary_handler_gets_the_request_as_a_stream() -> None:
    """The auth interceptor refuses a call without a valid token with such a handler."""
    with pytest.raises(aio.AioRpcError) as raised:
        await channel().unary_unary("/t.S/Refused")(StringValue(value="me"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "refused me"


async def test_a_stream_stream_handler_gets_the_request_of_a_unary_stream_call() -> None:
    """The auth interceptor refuses a streaming call without a valid token with such a
    handler."""
    stream = channel().unary_stream("/t.S/RefusedStream")
    with pytest.raises(aio.AioRpcError) as raised:
        async for _ in stream(StringValue(value="me"), timeout=5):
            pass
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "refused me"


async def test_a_stream_yields_every_answer_then_its_failure() -> None:
    stream = channel().unary_stream("/t.S/Count")
    assert [a.value async for a in stream(StringValue(value="n"), timeout=5)] == ["n0", "n1", "n2"]
    got: list[str] = []
    with pytest.raises(aio.AioRpcError) as raised:
        async for answer in stream(StringValue(value="fail"), timeout=5):
            got.append(answer.value)
    assert got == ["fail0", "fail1", "fail2"]
    assert raised.value.code() == grpc.StatusCode.ABORTED


async def test_a_closed_channel_refuses_calls_as_unavailable() -> None:
    closed = channel()
    await closed.close()
    with pytest.raises(aio.AioRpcError) as raised:
        await closed.unary_unary("/t.S/Echo")(StringValue(value="x"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_registry_keeps_what_a_server_registers() -> None:
    server = aio.server()
    registry = MethodRegistry(server)
    handler = grpc.unary_unary_rpc_method_handler(
        echo,
        request_deserializer=StringValue.FromString,
        response_serializer=StringValue.SerializeToString,
    )
    generic = grpc.method_handlers_generic_handler("t.S", {"Echo": handler})
    registry.add_generic_rpc_handlers((generic,))
    registry.add_registered_method_handlers("t.S", {"Echo": handler})
    assert registry.handlers == {"/t.S/Echo": handler}
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as real:
            call = real.unary_unary(
                "/t.S/Echo",
                request_serializer=StringValue.SerializeToString,
                response_deserializer=StringValue.FromString,
            )
            assert (await call(StringValue(value="hi"), timeout=5)).value.startswith(
                "hi from ipv4:"
            )
    finally:
        await server.stop(0)
