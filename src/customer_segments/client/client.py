"""CustomerSegmentsClient: one typed async method per RPC, over one gRPC channel."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import random
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import grpc

from customer_segments.client import _convert as convert
from customer_segments.client.errors import CustomerSegmentsError, from_rpc_error
from customer_segments.client.types import (
    Assignment,
    AssignmentListing,
    AssignmentPage,
    BulkItemResult,
    BulkRemoveItem,
    BulkSegmentItem,
    BulkSegmentResult,
    BulkUpsertItem,
    Listing,
    PatchOperation,
    Segment,
    SegmentFields,
    SegmentPage,
    UpsertedAssignment,
    UpsertedSegment,
)

TokenProvider = Callable[[], str | Awaitable[str]]
DEFAULT_TIMEOUT_SECONDS = 30.0
# A bulk call's deadline covers all its items, so it gets longer by default.
DEFAULT_BULK_TIMEOUT_SECONDS = 600.0
# Items per streamed message: the server decides items in batches of this size, so a result
# comes back per message without one HTTP/2 frame per item.
DEFAULT_CHUNK_SIZE = 200

_Item = TypeVar("_Item")


_Result = TypeVar("_Result")


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the service. PEM bytes or a path to a PEM file each."""

    # The roots that sign the server's certificate; None for the system's roots.
    ca_certificate: bytes | Path | None = None
    # For mutual TLS.
    client_certificate: bytes | Path | None = None
    client_key: bytes | Path | None = None
    # The name to check the server's certificate against, when it is not the target's host.
    server_name: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of idempotent calls on UNAVAILABLE, done by gRPC itself (its service config).
    gRPC allows at most 5 attempts."""

    max_attempts: int = 4
    initial_backoff_seconds: float = 0.1
    max_backoff_seconds: float = 2.0
    backoff_multiplier: float = 2.0


def _pem(value: bytes | Path | None) -> bytes | None:
    return value.read_bytes() if isinstance(value, Path) else value


def channel_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    """gRPC's credentials for `tls` (the REST gateway's channel uses them too)."""
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(tls.ca_certificate),
        private_key=_pem(tls.client_key),
        certificate_chain=_pem(tls.client_certificate),
    )


def _service_config(retry: RetryPolicy | None) -> str:
    if retry is None:
        return json.dumps({"methodConfig": []})
    names = [
        {"service": service, "method": method}
        for service, methods in convert.IDEMPOTENT_METHODS.items()
        for method in methods
    ]
    policy = {
        "maxAttempts": retry.max_attempts,
        "initialBackoff": f"{retry.initial_backoff_seconds}s",
        "maxBackoff": f"{retry.max_backoff_seconds}s",
        "backoffMultiplier": retry.backoff_multiplier,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


async def _chunks(
    items: Iterable[_Item] | AsyncIterable[_Item], size: int
) -> AsyncIterator[list[_Item]]:
    """The items in lists of `size`, read only as each list is asked for."""
    chunk: list[_Item] = []
    if isinstance(items, AsyncIterable):
        async for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    else:
        for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


class CustomerSegmentsClient:
    """An async client of the Customer Segment service.

        async with CustomerSegmentsClient("segments.internal:50051", token_provider=fetch) as c:
            assignment = await c.get_assignment("acme", "gold", "c1")

    `token` is sent on every call; `token_provider` (sync or async) is asked for a token before
    every call instead, so that it can refresh them. `tls`: None or False for plaintext (a
    loopback or a mesh that encrypts), True for TLS with the system's roots, a TlsConfig, or
    grpc.ChannelCredentials. Every call has a deadline: `timeout` seconds (`bulk_timeout` for
    the bulk calls, whose deadline covers all their items) unless the call gives its own.
    Failures raise customer_segments.client.errors.CustomerSegmentsError and its subclasses.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        tls: bool | TlsConfig | grpc.ChannelCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        bulk_timeout: float = DEFAULT_BULK_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = RetryPolicy(),
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if token is not None and token_provider is not None:
            raise ValueError("give token or token_provider, not both")
        if timeout <= 0 or bulk_timeout <= 0:
            raise ValueError("timeout and bulk_timeout must be positive")
        self._target = target
        self._token = token
        self._token_provider = token_provider
        self._tls = tls
        self._timeout = timeout
        self._bulk_timeout = bulk_timeout
        self._retry = retry
        self._options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _service_config(retry)),
            *channel_options,
        ]
        self._channel: grpc.aio.Channel | None = None
        self._stubs: convert.Stubs | None = None

    def _credentials(self) -> grpc.ChannelCredentials | None:
        tls = self._tls
        if tls is None or tls is False:
            return None
        if tls is True:
            return grpc.ssl_channel_credentials()
        if isinstance(tls, TlsConfig):
            return channel_credentials(tls)
        return tls

    async def open(self) -> None:
        if self._channel is not None:
            return
        credentials = self._credentials()
        if credentials is None:
            channel = grpc.aio.insecure_channel(self._target, options=self._options)
        else:
            options = list(self._options)
            if isinstance(self._tls, TlsConfig) and self._tls.server_name:
                options.append(("grpc.ssl_target_name_override", self._tls.server_name))
            channel = grpc.aio.secure_channel(self._target, credentials, options=options)
        self._channel = channel
        self._stubs = convert.Stubs(channel)

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stubs = self._channel, None, None
            await channel.close(None)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # Plumbing -------------------------------------------------------------------------------

    @property
    def _rpc(self) -> convert.Stubs:
        if self._stubs is None:
            raise RuntimeError("the client is not open: use `async with` or await open()")
        return self._stubs

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self._token
        if self._token_provider is not None:
            provided = self._token_provider()
            token = await provided if inspect.isawaitable(provided) else provided
        return (("authorization", f"Bearer {token}"),) if token else ()

    def _deadline(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else timeout

    def _bulk_deadline(self, timeout: float | None) -> float:
        return self._bulk_timeout if timeout is None else timeout

    async def _unary(self, method: Any, request: Any, timeout: float | None) -> Any:
        attempt = 1
        while True:
            try:
                return await method(
                    request, metadata=await self._metadata(), timeout=self._deadline(timeout)
                )
            except grpc.aio.AioRpcError as error:
                if not self._repeatable(method, error, attempt):
                    raise from_rpc_error(error) from error
            await self._back_off(attempt)
            attempt += 1

    async def _back_off(self, attempt: int) -> None:
        assert self._retry is not None
        backoff = self._retry.initial_backoff_seconds * self._retry.backoff_multiplier ** (
            attempt - 1
        )
        await asyncio.sleep(random.uniform(0, min(backoff, self._retry.max_backoff_seconds)))

    def _cut_off(self, error: grpc.aio.AioRpcError, attempt: int) -> bool:
        """Whether a call whose answer was cut off, the server having died mid-answer, may be
        made again: gRPC's own retries stop once headers arrived (the call is committed), and
        through a proxy such as HAProxy the cut reads UNKNOWN "Stream removed"."""
        if self._retry is None or attempt >= self._retry.max_attempts:
            return False
        code, details = error.code(), error.details() or ""
        return code == grpc.StatusCode.UNAVAILABLE or (
            code == grpc.StatusCode.UNKNOWN and "Stream removed" in details
        )

    def _repeatable(self, method: Any, error: grpc.aio.AioRpcError, attempt: int) -> bool:
        """A unary call cut off as _cut_off says, when it is idempotent (UNAVAILABLE before
        any header is gRPC's own retry policy's, already spent when it reaches here)."""
        if error.code() == grpc.StatusCode.UNAVAILABLE or not self._cut_off(error, attempt):
            return False
        service, _, name = getattr(method, "_method", b"").decode().strip("/").partition("/")
        return name in convert.IDEMPOTENT_METHODS.get(service, ())

    async def _results(self, call: Any) -> AsyncIterator[BulkItemResult]:
        async for result in self._decided(call, convert.bulk_results):
            yield result

    async def _decided(
        self, call: Any, results_of: Callable[[Any], list[_Result]]
    ) -> AsyncIterator[_Result]:
        try:
            async for answer in call:
                for result in results_of(answer):
                    yield result
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from error
        finally:
            # A caller that stops reading ends the call (and stops feeding the input).
            call.cancel()

    async def _streamed(
        self,
        method: Any,
        message: Callable[[str, str, list[_Item]], Any],
        tenant: str,
        segment_id: str,
        items: Iterable[_Item] | AsyncIterable[_Item],
        chunk_size: int,
        timeout: float | None,
    ) -> AsyncIterator[BulkItemResult]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")

        async def requests() -> AsyncIterator[Any]:
            # gRPC pulls the next message only when the previous one is written, so the input
            # is read as the server takes it, never all at once.
            first = True
            async for chunk in _chunks(items, chunk_size):
                yield message(tenant if first else "", segment_id if first else "", chunk)
                first = False
            if first:  # no items: the stream still names its tenant and segment
                yield message(tenant, segment_id, [])

        call = method(
            requests(), metadata=await self._metadata(), timeout=self._bulk_deadline(timeout)
        )
        async for result in self._results(call):
            yield result

    # Assignments ----------------------------------------------------------------------------

    async def get_assignment(
        self,
        tenant: str,
        segment_id: str,
        customer_id: str,
        legal_entity_id: str = "",
        *,
        timeout: float | None = None,
    ) -> Assignment:
        request = convert.get_assignment_request(tenant, segment_id, customer_id, legal_entity_id)
        answer = await self._unary(self._rpc.assignments.GetAssignment, request, timeout)
        return convert.assignment(answer.assignment)

    async def upsert_assignment(
        self,
        tenant: str,
        segment_id: str,
        customer_id: str,
        legal_entity_id: str = "",
        *,
        mixins: Mapping[str, Any] | None = None,
        metadata_mixins: Mapping[str, Any] | None = None,
        version: int | None = None,
        must_exist: bool = False,
        timeout: float | None = None,
    ) -> UpsertedAssignment:
        """Creates or replaces (PUT semantics). With `version`, only if the stored one equals
        it (Conflict otherwise); with `must_exist`, never creates."""
        request = convert.upsert_assignment_request(
            tenant,
            segment_id,
            customer_id,
            legal_entity_id,
            mixins,
            metadata_mixins,
            version,
            must_exist,
        )
        answer = await self._unary(self._rpc.assignments.UpsertAssignment, request, timeout)
        return convert.upserted_assignment(answer)

    async def remove_assignment(
        self,
        tenant: str,
        segment_id: str,
        customer_id: str,
        legal_entity_id: str = "",
        *,
        version: int | None = None,
        must_exist: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Succeeds whether or not the assignment existed, unless `version` or `must_exist`."""
        request = convert.remove_assignment_request(
            tenant, segment_id, customer_id, legal_entity_id, version, must_exist
        )
        await self._unary(self._rpc.assignments.RemoveAssignment, request, timeout)

    async def list_assignments(
        self,
        tenant: str,
        segment_id: str,
        *,
        timeout: float | None = None,
        **listing: Unpack[AssignmentListing],
    ) -> AssignmentPage:
        """A page of the segment's assignments (a customer token: only its own)."""
        request = convert.list_assignments_request(tenant, segment_id, listing)
        answer = await self._unary(self._rpc.assignments.ListAssignments, request, timeout)
        return convert.assignment_page(answer, listing.get("include_total_count", False))

    async def search_assignments(
        self,
        tenant: str,
        segment_id: str,
        *,
        timeout: float | None = None,
        **listing: Unpack[AssignmentListing],
    ) -> AssignmentPage:
        """As list_assignments, under the scope rules of the search path (no customer tokens)."""
        request = convert.search_assignments_request(tenant, segment_id, listing)
        answer = await self._unary(self._rpc.assignments.SearchAssignments, request, timeout)
        return convert.assignment_page(answer, listing.get("include_total_count", False))

    async def bulk_upsert_assignments(
        self,
        tenant: str,
        segment_id: str,
        items: Iterable[BulkUpsertItem],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkItemResult]:
        """All items in one request (bounded by the server's message size); results as the
        server decides them. For any number of items, use stream_upsert_assignments.

        When the answer is cut off (the server died mid-call), the items not answered yet are
        sent again, within the retry policy: each item is an idempotent upsert, and the results
        keep the items' indexes in `items`."""
        pending = list(enumerate(items, start=1))
        attempt = 1
        while True:
            request = convert.bulk_upsert_request(tenant, segment_id, [i for _, i in pending])
            call = self._rpc.assignments.BulkUpsertAssignments(
                request, metadata=await self._metadata(), timeout=self._bulk_deadline(timeout)
            )
            answered: set[int] = set()
            try:
                async for result in self._results(call):
                    original = pending[result.index - 1][0]
                    answered.add(original)
                    yield dataclasses.replace(result, index=original)
                return
            except CustomerSegmentsError as error:
                cause = error.__cause__
                if not isinstance(cause, grpc.aio.AioRpcError) or not self._cut_off(cause, attempt):
                    raise
            pending = [(index, item) for index, item in pending if index not in answered]
            await self._back_off(attempt)
            attempt += 1

    async def bulk_remove_assignments(
        self,
        tenant: str,
        segment_id: str,
        items: Iterable[BulkRemoveItem],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkItemResult]:
        request = convert.bulk_remove_request(tenant, segment_id, items)
        call = self._rpc.assignments.BulkRemoveAssignments(
            request, metadata=await self._metadata(), timeout=self._bulk_deadline(timeout)
        )
        async for result in self._results(call):
            yield result

    def stream_upsert_assignments(
        self,
        tenant: str,
        segment_id: str,
        items: Iterable[BulkUpsertItem] | AsyncIterable[BulkUpsertItem],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkItemResult]:
        """Upserts any number of items, read lazily from `items` while results stream back
        (indexes count from 1 across the whole input). The deadline covers the whole stream."""
        return self._streamed(
            self._rpc.assignments.StreamUpsertAssignments,
            convert.stream_upsert_request,
            tenant,
            segment_id,
            items,
            chunk_size,
            timeout,
        )

    def stream_remove_assignments(
        self,
        tenant: str,
        segment_id: str,
        items: Iterable[BulkRemoveItem] | AsyncIterable[BulkRemoveItem],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkItemResult]:
        return self._streamed(
            self._rpc.assignments.StreamRemoveAssignments,
            convert.stream_remove_request,
            tenant,
            segment_id,
            items,
            chunk_size,
            timeout,
        )

    # Segments -------------------------------------------------------------------------------

    async def create_segment(
        self,
        tenant: str,
        *,
        segment_id: str = "",
        timeout: float | None = None,
        **fields: Unpack[SegmentFields],
    ) -> Segment:
        """AlreadyExists when the id is taken; an empty id gets a generated one. Not retried."""
        request = convert.create_segment_request(
            tenant, convert.segment_message(segment_id, fields)
        )
        return convert.segment(
            (await self._unary(self._rpc.segments.CreateSegment, request, timeout)).segment
        )

    async def upsert_segment(
        self,
        tenant: str,
        segment_id: str,
        *,
        version: int | None = None,
        must_exist: bool = False,
        timeout: float | None = None,
        **fields: Unpack[SegmentFields],
    ) -> UpsertedSegment:
        """Creates or replaces (PUT semantics); `version` and `must_exist` as for assignments."""
        message = convert.segment_message(segment_id, fields)
        request = convert.upsert_segment_request(tenant, segment_id, message, version, must_exist)
        answer = await self._unary(self._rpc.segments.UpsertSegment, request, timeout)
        return convert.upserted_segment(answer)

    async def patch_segment(
        self,
        tenant: str,
        segment_id: str,
        operations: Iterable[PatchOperation | Mapping[str, Any]],
        *,
        version: int | None = None,
        timeout: float | None = None,
    ) -> Segment:
        """RFC 6902 (add, remove, replace) on the segment as REST shows it, e.g.
        {"op": "replace", "path": "/name/en", "value": "Gold"}. All apply or none. Not retried."""
        request = convert.patch_segment_request(tenant, segment_id, operations, version)
        answer = await self._unary(self._rpc.segments.PatchSegment, request, timeout)
        return convert.segment(answer.segment)

    async def get_segment(
        self, tenant: str, segment_id: str, *, timeout: float | None = None
    ) -> Segment:
        request = convert.get_segment_request(tenant, segment_id)
        answer = await self._unary(self._rpc.segments.GetSegment, request, timeout)
        return convert.segment(answer.segment)

    async def list_segments(
        self,
        tenant: str,
        *,
        customer_id: str | None = None,
        legal_entity_id: str | None = None,
        timeout: float | None = None,
        **listing: Unpack[Listing],
    ) -> SegmentPage:
        """A page of the tenant's segments; with `customer_id` (and `legal_entity_id`), only
        the segments that customer is assigned to."""
        request = convert.list_segments_request(tenant, customer_id, legal_entity_id, listing)
        answer = await self._unary(self._rpc.segments.ListSegments, request, timeout)
        return convert.segment_page(answer, listing.get("include_total_count", False))

    async def delete_segment(
        self,
        tenant: str,
        segment_id: str,
        *,
        force: bool = False,
        version: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """FailedPrecondition when the segment has assignments, unless `force` removes them.
        Not retried."""
        request = convert.delete_segment_request(tenant, segment_id, force, version)
        await self._unary(self._rpc.segments.DeleteSegment, request, timeout)

    async def bulk_create_segments(
        self,
        tenant: str,
        items: Iterable[BulkSegmentItem],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkSegmentResult]:
        """Each item created as create_segment would create it (409 for a taken id), in its own
        transaction; results as the server decides them. Not retried."""
        request = convert.bulk_create_segments_request(tenant, items)
        call = self._rpc.segments.BulkCreateSegments(
            request, metadata=await self._metadata(), timeout=self._bulk_deadline(timeout)
        )
        async for result in self._decided(call, convert.bulk_segment_results):
            yield result

    async def bulk_upsert_segments(
        self,
        tenant: str,
        items: Iterable[BulkSegmentItem],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkSegmentResult]:
        """Each item written as upsert_segment would write it: 201 created, 204 replaced."""
        request = convert.bulk_upsert_segments_request(tenant, items)
        call = self._rpc.segments.BulkUpsertSegments(
            request, metadata=await self._metadata(), timeout=self._bulk_deadline(timeout)
        )
        async for result in self._decided(call, convert.bulk_segment_results):
            yield result

    async def bulk_delete_segments(
        self,
        tenant: str,
        segment_ids: Iterable[str],
        *,
        force: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkSegmentResult]:
        """Each deleted as delete_segment would delete it: 204, 404 when absent, 400 when it
        has assignments and not `force`. Not retried."""
        request = convert.bulk_delete_segments_request(tenant, segment_ids, force)
        call = self._rpc.segments.BulkDeleteSegments(
            request, metadata=await self._metadata(), timeout=self._bulk_deadline(timeout)
        )
        async for result in self._decided(call, convert.bulk_segment_results):
            yield result

    # Directory ------------------------------------------------------------------------------

    async def upsert_customer(
        self,
        tenant: str,
        customer_id: str,
        *,
        first_name: str = "",
        last_name: str = "",
        email: str = "",
        timeout: float | None = None,
    ) -> None:
        """The display data that assignments of this customer show."""
        request = convert.upsert_customer_request(tenant, customer_id, first_name, last_name, email)
        await self._unary(self._rpc.directory.UpsertCustomer, request, timeout)

    async def upsert_legal_entity(
        self, tenant: str, legal_entity_id: str, *, name: str = "", timeout: float | None = None
    ) -> None:
        request = convert.upsert_legal_entity_request(tenant, legal_entity_id, name)
        await self._unary(self._rpc.directory.UpsertLegalEntity, request, timeout)
