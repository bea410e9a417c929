"""The gateway's side of gRPC: stubs on one channel, the caller's token and request id passed
on as metadata, a deadline on every call, and failures turned into REST answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
from aiohttp import web
from customersegment.v1 import assignment_pb2_grpc, segment_pb2_grpc, webhooks_pb2_grpc
from google.protobuf.message import Message

DEFAULT_DEADLINE_SECONDS = 30.0
# Set on every request by the gateway's middleware (taken from X-Request-Id, or made).
REQUEST_ID = web.RequestKey("request_id", str)

# The message types of one RPC, taken from the stub's multicallable, so that an answer is
# typed as that RPC's response message and a misnamed field fails mypy.
Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


class RpcFailed(Exception):
    def __init__(self, error: grpc.aio.AioRpcError, request: Message) -> None:
        super().__init__(error.details())
        self.error = error
        self._request = request

    @property
    def request_bytes(self) -> int:
        """The size of the request that failed (measured only when asked: on failures)."""
        return self._request.ByteSize()


class GrpcClient:
    def __init__(self, channel: grpc.aio.Channel, deadline: float = DEFAULT_DEADLINE_SECONDS):
        self.channel = channel
        self.deadline = deadline
        self.assignments = assignment_pb2_grpc.CustomerAssignmentServiceStub(channel)
        self.segments = segment_pb2_grpc.SegmentServiceStub(channel)
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(channel)

    @staticmethod
    def metadata(request: web.Request) -> list[tuple[str, str]]:
        metadata = [("x-request-id", request[REQUEST_ID])]
        authorization = request.headers.get("Authorization")
        if authorization:
            metadata.append(("authorization", authorization))
        return metadata

    async def call(
        self,
        request: web.Request,
        method: grpc.aio.UnaryUnaryMultiCallable[Request, Response],
        message: Request,
    ) -> Response:
        try:
            return await method(message, metadata=self.metadata(request), timeout=self.deadline)
        except grpc.aio.AioRpcError as error:
            raise RpcFailed(error, message) from None

    async def stream(
        self,
        request: web.Request,
        method: grpc.aio.UnaryStreamMultiCallable[Request, Response],
        message: Request,
    ) -> AsyncIterator[Response]:
        try:
            async for answer in method(
                message, metadata=self.metadata(request), timeout=self.deadline
            ):
                yield answer
        except grpc.aio.AioRpcError as error:
            raise RpcFailed(error, message) from None
