"""WebhookService: translates protobuf to the webhook use cases and back."""

from __future__ import annotations

from typing import Any

from customersegment.v1 import webhooks_pb2, webhooks_pb2_grpc
from grpc import aio

from customer_segments.domain.webhooks import Delivery, DeliveryStatus, Webhook, WebhookInput
from customer_segments.grpc.auth_interceptor import caller
from customer_segments.grpc.convert import timestamp
from customer_segments.services import webhooks
from customer_segments.store.store import Store

Context = aio.ServicerContext[Any, Any]

_STATUSES = {
    DeliveryStatus.PENDING: webhooks_pb2.DELIVERY_STATUS_PENDING,
    DeliveryStatus.FAILED: webhooks_pb2.DELIVERY_STATUS_FAILED,
    DeliveryStatus.RETRYING: webhooks_pb2.DELIVERY_STATUS_RETRYING,
    DeliveryStatus.DELIVERED: webhooks_pb2.DELIVERY_STATUS_DELIVERED,
}
_STATUS_FROM_PROTO = {proto: status for status, proto in _STATUSES.items()}


def _input(message: webhooks_pb2.Webhook) -> WebhookInput:
    return WebhookInput(
        destination_url=message.destination_url,
        secret_key=message.secret_key,
        headers=dict(message.headers),
        event_types=tuple(message.event_types),
        active=message.active if message.HasField("active") else None,
    )


def webhook_to_proto(webhook: Webhook) -> webhooks_pb2.Webhook:
    """Never with its secret: the message's secret_key is input only."""
    return webhooks_pb2.Webhook(
        id=webhook.id,
        destination_url=webhook.destination_url,
        headers=webhook.headers,
        event_types=webhook.event_types,
        active=webhook.active,
        metadata=webhooks_pb2.WebhookMetadata(
            created_at=timestamp(webhook.created_at),
            modified_at=timestamp(webhook.modified_at),
            version=webhook.version,
        ),
    )


def delivery_to_proto(delivery: Delivery) -> webhooks_pb2.Delivery:
    message = webhooks_pb2.Delivery(
        sequence=delivery.sequence,
        event_id=delivery.event_id,
        status=_STATUSES[delivery.status],
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code or 0,
        last_error=delivery.last_error or "",
        modified_at=timestamp(delivery.modified_at),
    )
    if delivery.next_attempt_at is not None and delivery.status is DeliveryStatus.PENDING:
        message.next_attempt_at.CopyFrom(timestamp(delivery.next_attempt_at))
    return message


def _version(request: Any) -> int | None:
    return int(request.version) if request.HasField("version") else None


class WebhookServicer(webhooks_pb2_grpc.WebhookServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def CreateWebhook(
        self, request: webhooks_pb2.CreateWebhookRequest, context: Context
    ) -> webhooks_pb2.CreateWebhookResponse:
        created = await webhooks.create_webhook(
            self.store, caller(), request.tenant, _input(request.webhook)
        )
        return webhooks_pb2.CreateWebhookResponse(
            webhook=webhook_to_proto(created.webhook),
            generated_secret_key=created.generated_secret_key,
        )

    async def ListWebhooks(
        self, request: webhooks_pb2.ListWebhooksRequest, context: Context
    ) -> webhooks_pb2.ListWebhooksResponse:
        found = await webhooks.list_webhooks(self.store, caller(), request.tenant)
        return webhooks_pb2.ListWebhooksResponse(webhooks=[webhook_to_proto(w) for w in found])

    async def GetWebhook(
        self, request: webhooks_pb2.GetWebhookRequest, context: Context
    ) -> webhooks_pb2.GetWebhookResponse:
        found = await webhooks.get_webhook(self.store, caller(), request.tenant, request.webhook_id)
        return webhooks_pb2.GetWebhookResponse(webhook=webhook_to_proto(found))

    async def UpdateWebhook(
        self, request: webhooks_pb2.UpdateWebhookRequest, context: Context
    ) -> webhooks_pb2.UpdateWebhookResponse:
        updated = await webhooks.update_webhook(
            self.store,
            caller(),
            request.tenant,
            request.webhook_id,
            _input(request.webhook),
            _version(request),
        )
        return webhooks_pb2.UpdateWebhookResponse(webhook=webhook_to_proto(updated))

    async def DeleteWebhook(
        self, request: webhooks_pb2.DeleteWebhookRequest, context: Context
    ) -> webhooks_pb2.DeleteWebhookResponse:
        await webhooks.delete_webhook(
            self.store, caller(), request.tenant, request.webhook_id, _version(request)
        )
        return webhooks_pb2.DeleteWebhookResponse()

    async def ListDeliveries(
        self, request: webhooks_pb2.ListDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListDeliveriesResponse:
        page = await webhooks.list_deliveries(
            self.store,
            caller(),
            request.tenant,
            request.webhook_id,
            _STATUS_FROM_PROTO.get(request.status),
            request.page_size,
            request.page_token,
        )
        return webhooks_pb2.ListDeliveriesResponse(
            deliveries=[delivery_to_proto(d) for d in page.deliveries],
            next_page_token=page.next_page_token,
        )

    async def RetryDelivery(
        self, request: webhooks_pb2.RetryDeliveryRequest, context: Context
    ) -> webhooks_pb2.RetryDeliveryResponse:
        queued = await webhooks.retry_delivery(
            self.store, caller(), request.tenant, request.webhook_id, request.sequence
        )
        return webhooks_pb2.RetryDeliveryResponse(delivery=delivery_to_proto(queued))
