"""EventService: WatchEvents, the outbox as a gRPC stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from customersegment.v1 import events_pb2, events_pb2_grpc
from grpc import aio

from customer_segments.grpc.auth_interceptor import caller
from customer_segments.grpc.convert import timestamp
from customer_segments.services.events import watch_events
from customer_segments.store.notifier import EventNotifier
from customer_segments.store.store import Store

Context = aio.ServicerContext[Any, Any]


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, store: Store, notifier: EventNotifier) -> None:
        self.store = store
        self.notifier = notifier

    async def WatchEvents(
        self, request: events_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[events_pb2.WatchEventsResponse]:
        watched = watch_events(
            self.store,
            caller(),
            request.tenant,
            self.notifier,
            event_types=list(request.event_types),
            segment_id=request.segment_id,
            after_sequence=request.after_sequence,
        )
        # At once, not with the first event (which may be far off): the client sees the stream
        # is up (wait_for_connection returns, grpcurl prints the headers).
        await context.send_initial_metadata(())
        occurred_at, occurred_at_message = None, None
        async for event in watched:
            if event.occurred_at != occurred_at:  # a bulk chunk's events share their instant
                occurred_at, occurred_at_message = event.occurred_at, timestamp(event.occurred_at)
            yield events_pb2.WatchEventsResponse(
                event=events_pb2.Event(
                    id=event.id,
                    sequence=event.sequence,
                    type=event.type,
                    tenant=event.tenant,
                    occurred_at=occurred_at_message,
                    payload_json=event.payload_json,
                )
            )
