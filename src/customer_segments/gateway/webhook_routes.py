"""The webhook paths (beyond the Emporix file, which configures webhooks elsewhere): endpoints
under /customer-segment/{tenant}/webhooks, their deliveries, and the retry of a failed one."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web
from customersegment.v1 import webhooks_pb2
from pydantic import Field, StrictBool, StrictStr

from customer_segments.domain.segment_document import DocumentModel
from customer_segments.gateway import render
from customer_segments.gateway.conditions import (
    CONDITIONAL,
    expectation,
    if_match,
    single,
    version_if_found,
)
from customer_segments.gateway.grpc_client import GrpcClient
from customer_segments.gateway.requests import BadRequest, json_body, page_parameter, parsed

BASE = "/customer-segment/{tenant}/webhooks"
ONE = BASE + "/{webhookId}"
STATUS_PREFIX = "DELIVERY_STATUS_"
_STATUSES = {
    name.removeprefix(STATUS_PREFIX).lower(): value
    for name, value in webhooks_pb2.DeliveryStatus.items()
    if value != webhooks_pb2.DELIVERY_STATUS_UNSPECIFIED
}


class WebhookBody(DocumentModel):
    destination_url: StrictStr = Field(alias="destinationUrl")
    secret_key: StrictStr | None = Field(None, alias="secretKey")
    headers: dict[StrictStr, StrictStr] | None = None
    event_types: list[StrictStr] | None = Field(None, alias="eventTypes")
    active: StrictBool | None = None


def _message(body: WebhookBody) -> webhooks_pb2.Webhook:
    message = webhooks_pb2.Webhook(
        destination_url=body.destination_url,
        secret_key=body.secret_key or "",
        headers=body.headers or {},
        event_types=body.event_types or [],
    )
    if body.active is not None:
        message.active = body.active
    return message


def _webhook(message: webhooks_pb2.Webhook) -> dict[str, Any]:
    return {
        "id": message.id,
        "destinationUrl": message.destination_url,
        "headers": dict(message.headers),
        "eventTypes": list(message.event_types),
        "active": message.active,
        "metadata": {
            "createdAt": render.timestamp(message.metadata.created_at),
            "modifiedAt": render.timestamp(message.metadata.modified_at),
            "version": message.metadata.version,
        },
    }


def _delivery(message: webhooks_pb2.Delivery) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sequence": message.sequence,
        "eventId": message.event_id,
        "status": webhooks_pb2.DeliveryStatus.Name(message.status).removeprefix(STATUS_PREFIX),
        "attempts": message.attempts,
        "modifiedAt": render.timestamp(message.modified_at),
    }
    if message.HasField("next_attempt_at"):
        body["nextAttemptAt"] = render.timestamp(message.next_attempt_at)
    if message.last_status_code:
        body["lastStatusCode"] = message.last_status_code
    if message.last_error:
        body["lastError"] = message.last_error
    return body


def _sequence(request: web.Request) -> int:
    text = request.match_info["sequence"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) < 1:
        raise BadRequest("sequence", "must be a whole number of at least 1")
    return int(text)


class WebhookRoutes:
    def __init__(self, client: GrpcClient) -> None:
        self.client = client

    def register(self, app: web.Application) -> None:
        router = app.router
        router.add_post(BASE, self.create)
        router.add_get(BASE, self.list)
        router.add_get(ONE, self.get)
        router.add_put(ONE, self.update)
        router.add_delete(ONE, self.delete)
        router.add_get(ONE + "/deliveries", self.deliveries)
        router.add_post(ONE + "/deliveries/{sequence}/retry", self.retry)

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = parsed(WebhookBody, await json_body(request))
        answer = await self.client.call(
            request,
            self.client.webhooks.CreateWebhook,
            webhooks_pb2.CreateWebhookRequest(
                tenant=request.match_info["tenant"], webhook=_message(body)
            ),
        )
        created: dict[str, Any] = {"id": answer.webhook.id}
        if answer.generated_secret_key:  # once, here only
            created["secretKey"] = answer.generated_secret_key
        location = request.rel_url.raw_path.rstrip("/") + "/" + quote(answer.webhook.id, safe="")
        return web.json_response(created, status=201, headers={"Location": location})

    async def list(self, request: web.Request) -> web.StreamResponse:
        answer = await self.client.call(
            request,
            self.client.webhooks.ListWebhooks,
            webhooks_pb2.ListWebhooksRequest(tenant=request.match_info["tenant"]),
        )
        return web.json_response([_webhook(webhook) for webhook in answer.webhooks])

    async def _get(self, request: web.Request) -> webhooks_pb2.Webhook:
        answer = await self.client.call(
            request,
            self.client.webhooks.GetWebhook,
            webhooks_pb2.GetWebhookRequest(
                tenant=request.match_info["tenant"], webhook_id=request.match_info["webhookId"]
            ),
        )
        return answer.webhook

    async def get(self, request: web.Request) -> web.StreamResponse:
        webhook = await self._get(request)
        return single(request, _webhook(webhook), webhook.metadata.version)

    async def _version(self, request: web.Request) -> int | None:
        """If-Match as on segments: the version the write must find (412 otherwise)."""
        condition = if_match(request)
        if condition is None:
            return None
        request[CONDITIONAL] = True

        async def read() -> int:
            return (await self._get(request)).metadata.version

        expected = await expectation(
            condition, None, request.match_info["webhookId"], lambda: version_if_found(read)
        )
        return expected.version

    async def update(self, request: web.Request) -> web.StreamResponse:
        body = parsed(WebhookBody, await json_body(request))
        message = webhooks_pb2.UpdateWebhookRequest(
            tenant=request.match_info["tenant"],
            webhook_id=request.match_info["webhookId"],
            webhook=_message(body),
        )
        version = await self._version(request)
        if version is not None:
            message.version = version
        await self.client.call(request, self.client.webhooks.UpdateWebhook, message)
        return web.Response(status=204)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        message = webhooks_pb2.DeleteWebhookRequest(
            tenant=request.match_info["tenant"], webhook_id=request.match_info["webhookId"]
        )
        version = await self._version(request)
        if version is not None:
            message.version = version
        await self.client.call(request, self.client.webhooks.DeleteWebhook, message)
        return web.Response(status=204)

    async def deliveries(self, request: web.Request) -> web.StreamResponse:
        status_name = request.query.get("status", "").lower()
        if status_name and status_name not in _STATUSES:
            raise BadRequest("status", f"must be one of {', '.join(sorted(_STATUSES))}")
        answer = await self.client.call(
            request,
            self.client.webhooks.ListDeliveries,
            webhooks_pb2.ListDeliveriesRequest(
                tenant=request.match_info["tenant"],
                webhook_id=request.match_info["webhookId"],
                status=_STATUSES.get(status_name, webhooks_pb2.DELIVERY_STATUS_UNSPECIFIED),
                page_size=page_parameter(request, "pageSize"),
                page_token=request.query.get("next", ""),
            ),
        )
        headers = {"X-Next-Cursor": answer.next_page_token} if answer.next_page_token else {}
        return web.json_response(
            [_delivery(delivery) for delivery in answer.deliveries], headers=headers
        )

    async def retry(self, request: web.Request) -> web.StreamResponse:
        answer = await self.client.call(
            request,
            self.client.webhooks.RetryDelivery,
            webhooks_pb2.RetryDeliveryRequest(
                tenant=request.match_info["tenant"],
                webhook_id=request.match_info["webhookId"],
                sequence=_sequence(request),
            ),
        )
        # Accepted: the attempt follows, made by the process that serves the endpoint.
        return web.json_response(_delivery(answer.delivery), status=202)
