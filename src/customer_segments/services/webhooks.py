"""Use cases of webhook endpoints: create, list, get, update, delete, and their deliveries
(list, retry). Delivery itself is services/webhook_delivery.py."""

from __future__ import annotations

import secrets
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain import validation, webhooks
from customer_segments.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    VersionConflict,
    over_limit,
)
from customer_segments.domain.principal import Principal
from customer_segments.domain.webhooks import Delivery, DeliveryStatus, Webhook, WebhookInput
from customer_segments.services.audit import authorized_write
from customer_segments.services.authorization import UseCase, authorize
from customer_segments.store.database import utc_now
from customer_segments.store.store import Store

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000


class CreatedWebhook(NamedTuple):
    webhook: Webhook
    # The secret made because the caller gave none: shown once, in the create answer only.
    generated_secret_key: str


class DeliveryPage(NamedTuple):
    deliveries: list[Delivery]
    next_page_token: str


def _validated(given: WebhookInput) -> WebhookInput:
    return WebhookInput(
        destination_url=webhooks.destination_url(given.destination_url, "webhook.destination_url"),
        secret_key=given.secret_key and webhooks.secret_key(given.secret_key, "webhook.secret_key"),
        headers=webhooks.headers(given.headers, "webhook.headers"),
        event_types=webhooks.event_types(given.event_types, "webhook.event_types"),
        active=given.active,
    )


async def _current(
    store: Store,
    connection: AsyncConnection,
    tenant: str,
    endpoint_id: str,
    expected_version: int | None,
) -> Webhook:
    """The endpoint a write is about, at the version it expects (when it names one)."""
    current = await store.webhooks.get(connection, tenant, endpoint_id)
    if current is None:
        raise NotFound("webhook", endpoint_id)
    if expected_version is not None and expected_version != current.version:
        raise VersionConflict("webhook", endpoint_id, expected_version, current.version)
    return current


def _endpoint_id(webhook_id: str) -> str:
    return validation.identifier(webhook_id, "webhook_id")


async def create_webhook(
    store: Store, principal: Principal, tenant: str, given: WebhookInput
) -> CreatedWebhook:
    with authorized_write(principal, UseCase.CREATE_WEBHOOK, tenant, None):
        validation.tenant(tenant)
        checked = _validated(given)
        generated = "" if checked.secret_key else webhooks.generated_secret()
        async with store.write() as connection:
            if await store.webhooks.count(connection, tenant) >= webhooks.MAX_ENDPOINTS_PER_TENANT:
                raise over_limit(
                    "tenant",
                    f"has {webhooks.MAX_ENDPOINTS_PER_TENANT} webhook endpoints, the most it "
                    "may have",
                )
            created = await store.webhooks.create(
                connection,
                tenant,
                secrets.token_hex(12),
                checked,
                checked.secret_key or generated,
                utc_now(),
            )
        return CreatedWebhook(created, generated)


async def list_webhooks(store: Store, principal: Principal, tenant: str) -> list[Webhook]:
    authorize(principal, UseCase.LIST_WEBHOOKS, tenant)
    validation.tenant(tenant)
    async with store.read() as connection:
        return await store.webhooks.list_all(connection, tenant, webhooks.MAX_ENDPOINTS_PER_TENANT)


async def get_webhook(store: Store, principal: Principal, tenant: str, webhook_id: str) -> Webhook:
    authorize(principal, UseCase.GET_WEBHOOK, tenant)
    validation.tenant(tenant)
    endpoint_id = _endpoint_id(webhook_id)
    async with store.read() as connection:
        found = await store.webhooks.get(connection, tenant, endpoint_id)
    if found is None:
        raise NotFound("webhook", endpoint_id)
    return found


async def update_webhook(
    store: Store,
    principal: Principal,
    tenant: str,
    webhook_id: str,
    given: WebhookInput,
    expected_version: int | None,
) -> Webhook:
    with authorized_write(principal, UseCase.UPDATE_WEBHOOK, tenant, None):
        validation.tenant(tenant)
        endpoint_id = _endpoint_id(webhook_id)
        checked = _validated(given)
        async with store.write() as connection:
            current = await _current(store, connection, tenant, endpoint_id, expected_version)
            updated = await store.webhooks.update(
                connection, tenant, endpoint_id, checked, current.version, utc_now()
            )
        if updated is None:  # changed between the read and the write (a 410 meanwhile)
            raise VersionConflict("webhook", endpoint_id, current.version, None)
        return updated


async def delete_webhook(
    store: Store,
    principal: Principal,
    tenant: str,
    webhook_id: str,
    expected_version: int | None,
) -> None:
    with authorized_write(principal, UseCase.DELETE_WEBHOOK, tenant, None):
        validation.tenant(tenant)
        endpoint_id = _endpoint_id(webhook_id)
        async with store.write() as connection:
            await _current(store, connection, tenant, endpoint_id, expected_version)
            await store.webhooks.delete(connection, tenant, endpoint_id)


def _page_size(size: int) -> int:
    if size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if size > MAX_PAGE_SIZE:
        raise over_limit("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return size or DEFAULT_PAGE_SIZE


def _after(page_token: str) -> int:
    """The token is the last sequence of the page before (a plain number: it only tells
    where to go on, and shows nothing the caller may not see)."""
    if not page_token:
        return 0
    if not page_token.isascii() or not page_token.isdigit() or len(page_token) > 19:
        raise InvalidArgument(
            "page_token", "is not a token of this listing", Reason.INVALID_PAGE_TOKEN
        )
    return int(page_token)


async def list_deliveries(
    store: Store,
    principal: Principal,
    tenant: str,
    webhook_id: str,
    status: DeliveryStatus | None,
    page_size: int,
    page_token: str,
) -> DeliveryPage:
    authorize(principal, UseCase.LIST_DELIVERIES, tenant)
    validation.tenant(tenant)
    endpoint_id = _endpoint_id(webhook_id)
    size, after = _page_size(page_size), _after(page_token)
    async with store.read() as connection:
        if await store.webhooks.get(connection, tenant, endpoint_id) is None:
            raise NotFound("webhook", endpoint_id)
        found = await store.webhooks.deliveries(
            connection, tenant, endpoint_id, status, after, size + 1
        )
    more = len(found) > size
    found = found[:size]
    return DeliveryPage(found, str(found[-1].sequence) if more else "")


async def retry_delivery(
    store: Store, principal: Principal, tenant: str, webhook_id: str, sequence: int
) -> Delivery:
    with authorized_write(principal, UseCase.RETRY_DELIVERY, tenant, None):
        validation.tenant(tenant)
        endpoint_id = _endpoint_id(webhook_id)
        if sequence < 1:
            raise InvalidArgument("sequence", "must be at least 1")
        async with store.write() as connection:
            if await store.webhooks.get(connection, tenant, endpoint_id) is None:
                raise NotFound("webhook", endpoint_id)
            queued = await store.webhooks.queue_retry(
                connection, tenant, endpoint_id, sequence, utc_now()
            )
            if queued is None:
                found = await store.webhooks.delivery(connection, tenant, endpoint_id, sequence)
                if found is None:
                    raise NotFound("webhook delivery", str(sequence))
                raise FailedPrecondition(
                    f"The delivery of event {sequence} is {found.status.value}, not FAILED.",
                    str(sequence),
                    Reason.DELIVERY_NOT_FAILED,
                )
        return queued
