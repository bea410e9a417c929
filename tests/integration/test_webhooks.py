"""Webhook endpoints over gRPC and REST, and their delivery to real receivers on loopback, on
both databases: Standard Webhooks signatures, order, retries, 410, FAILED and the retry call,
and the SSRF rules at create and at delivery."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp.abc import AbstractResolver, ResolveResult
from customersegment.v1 import webhooks_pb2
from sqlalchemy import update
from standardwebhooks import Webhook as Verifier

from customer_segments.domain.errors import Unavailable
from customer_segments.domain.webhooks import EVENT_TYPES
from customer_segments.services.webhook_delivery import DeliverySettings, WebhookDispatcher
from customer_segments.store.database import utc_now
from customer_segments.store.events import NewEvent, StoredEvent
from customer_segments.store.store import Store
from customer_segments.store.tables import webhook_endpoints
from tests.conftest import Stubs
from tests.helpers import bearer, expect_error, field_violations
from tests.webhook_receiver import receiving

pytestmark = pytest.mark.asyncio(loop_scope="session")

CREATED, DELETED = EVENT_TYPES[0], EVENT_TYPES[2]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks example (24 bytes)
# Short: the schedule of a test, immediately then 0.1 s apart.
FAST = DeliverySettings(
    retry_schedule=(0, 0.1, 0.1, 0.1),
    timeout_seconds=2.0,
    poll_interval_seconds=0.05,
    lease_seconds=5.0,
)


class _Names(AbstractResolver):
    """DNS for names the test makes up (the service's guard checks what it answers)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.names.get(host, "127.0.0.1")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
        ]

    async def close(self) -> None:
        pass


@pytest_asyncio.fixture(loop_scope="session")
async def deliver(store: Store) -> AsyncIterator[WebhookDispatcher]:
    """A delivering process's dispatcher; afterwards every endpoint is inactive, so that no
    later test's dispatcher calls this test's receivers."""
    dispatcher = WebhookDispatcher(
        store, FAST, resolver=_Names({"evil.example": "169.254.169.254"})
    )
    await dispatcher.start()
    yield dispatcher
    await dispatcher.stop()
    # Retried: on SQLite another test's dispatcher may hold the write lock past the busy
    # timeout on a slow machine, and this clean-up must happen all the same.
    for attempt in range(10):
        try:
            async with store.write() as connection:
                await connection.execute(update(webhook_endpoints).values(active=False))
            break
        except Unavailable:
            if attempt == 9:
                raise
            await asyncio.sleep(1)


async def _create(stubs: Stubs, tenant: str, url: str, **fields: Any) -> str:
    answer = await stubs.webhooks.CreateWebhook(
        webhooks_pb2.CreateWebhookRequest(
            tenant=tenant,
            webhook=webhooks_pb2.Webhook(destination_url=url, secret_key=SECRET, **fields),
        )
    )
    return answer.webhook.id


async def _append(store: Store, tenant: str, *types: str) -> list[StoredEvent]:
    async with store.write() as connection:
        return await store.events.append(
            connection,
            tenant,
            [
                NewEvent(kind, "gold", {"tenant": tenant, "id": "gold", "n": n})
                for n, kind in enumerate(types)
            ],
            utc_now(),
        )


async def _deliveries(
    stubs: Stubs,
    tenant: str,
    webhook_id: str,
    status: webhooks_pb2.DeliveryStatus.ValueType = webhooks_pb2.DELIVERY_STATUS_UNSPECIFIED,
) -> list[webhooks_pb2.Delivery]:
    answer = await stubs.webhooks.ListDeliveries(
        webhooks_pb2.ListDeliveriesRequest(tenant=tenant, webhook_id=webhook_id, status=status)
    )
    return list(answer.deliveries)


async def _until(condition: Any) -> None:
    """Polls an async condition until it holds (30 s: generous, the machine is shared)."""
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not hold within 30 s")


# Management --------------------------------------------------------------------------------


async def test_endpoints_over_rest_keep_their_secret_write_only(
    http: aiohttp.ClientSession, tenant: str
) -> None:
    base = f"/customer-segment/{tenant}/webhooks"
    body = {"destinationUrl": "https://hooks.example/in", "eventTypes": [CREATED]}
    async with http.post(base, json=body) as created:
        assert created.status == 201, await created.text()
        answer = await created.json()
        assert created.headers["Location"] == f"{base}/{answer['id']}"
    generated = answer["secretKey"]
    assert generated.startswith("whsec_")
    Verifier(generated)  # a secret the library takes
    given = {**body, "secretKey": SECRET, "headers": {"X-Team": "pricing"}, "active": False}
    async with http.post(base, json=given) as second:
        assert second.status == 201
        assert "secretKey" not in await second.json()  # given, so not shown back
    async with http.get(base) as listed:
        endpoints = await listed.json()
        text = json.dumps(endpoints)
    assert [e["destinationUrl"] for e in endpoints] == ["https://hooks.example/in"] * 2
    assert SECRET not in text and generated not in text and "secretKey" not in text
    assert endpoints[1]["headers"] == {"X-Team": "pricing"} and endpoints[1]["active"] is False
    one = f"{base}/{answer['id']}"
    async with http.get(one) as got:
        assert got.headers["ETag"] == '"1"'
        assert (await got.json())["eventTypes"] == [CREATED]
    update = {"destinationUrl": "https://hooks.example/v2", "active": True}
    async with http.put(one, json=update, headers={"If-Match": '"1"'}) as put:
        assert put.status == 204, await put.text()
    async with http.put(one, json=update, headers={"If-Match": '"1"'}) as stale:
        assert stale.status == 412
    async with http.get(one) as got:
        document = await got.json()
    assert document["destinationUrl"] == "https://hooks.example/v2"
    assert document["eventTypes"] == [] and document["metadata"]["version"] == 2
    async with http.delete(one) as deleted:
        assert deleted.status == 204
    async with http.get(one) as gone:
        assert gone.status == 404
        assert (await gone.json())["resourceId"] == answer["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "destinationUrl"),
        ({"destinationUrl": "http://hooks.example/in"}, "destinationUrl"),
        ({"destinationUrl": "ftp://127.0.0.1/in"}, "destinationUrl"),
        ({"destinationUrl": "https://user:pw@hooks.example/"}, "destinationUrl"),
        ({"destinationUrl": "https://169.254.169.254/latest/meta-data"}, "destinationUrl"),
        ({"destinationUrl": "https://[fe80::1]/"}, "destinationUrl"),
        ({"destinationUrl": "https://0.0.0.0/"}, "destinationUrl"),
        ({"destinationUrl": "https://224.0.0.1/"}, "destinationUrl"),
        ({"destinationUrl": "https://[::ffff:169.254.169.254]/"}, "destinationUrl"),
        ({"destinationUrl": "https://metadata.google.internal/"}, "destinationUrl"),
        ({"destinationUrl": "https://h.example/", "secretKey": "plain"}, "secretKey"),
        ({"destinationUrl": "https://h.example/", "secretKey": "whsec_c2hvcnQ="}, "secretKey"),
        ({"destinationUrl": "https://h.example/", "headers": {"Connection": "x"}}, "headers"),
        ({"destinationUrl": "https://h.example/", "headers": {"webhook-id": "x"}}, "headers"),
        ({"destinationUrl": "https://h.example/", "headers": {"X-A": "a\nb"}}, "headers.X-A"),
        ({"destinationUrl": "https://h.example/", "eventTypes": ["order.created"]}, "eventTypes"),
        ({"destinationUrl": "https://h.example/", "active": "yes"}, "active"),
    ],
)
async def test_a_bad_endpoint_is_400_naming_the_field(
    http: aiohttp.ClientSession, tenant: str, body: dict[str, Any], field: str
) -> None:
    async with http.post(f"/customer-segment/{tenant}/webhooks", json=body) as answer:
        assert answer.status == 400, await answer.text()
        assert (await answer.json())["details"]["field"] == field


async def test_grpc_management_needs_manage_scope_of_the_tenant(
    stubs: Stubs, bare_http: aiohttp.ClientSession, tenant: str
) -> None:
    webhook_id = await _create(stubs, tenant, "https://hooks.example/in")
    request = webhooks_pb2.GetWebhookRequest(tenant=tenant, webhook_id=webhook_id)
    found = (await stubs.webhooks.GetWebhook(request)).webhook
    assert found.secret_key == "" and found.active and found.metadata.version == 1
    read_only = [("authorization", bearer(tenant, "customersegment.segment_read"))]
    await expect_error(
        stubs.webhooks.GetWebhook(request, metadata=read_only), grpc.StatusCode.PERMISSION_DENIED
    )
    other = [("authorization", bearer("another"))]
    await expect_error(
        stubs.webhooks.ListWebhooks(
            webhooks_pb2.ListWebhooksRequest(tenant=tenant), metadata=other
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    async with bare_http.get(f"/customer-segment/{tenant}/webhooks") as anonymous:
        assert anonymous.status == 401
    error = await expect_error(
        stubs.webhooks.UpdateWebhook(
            webhooks_pb2.UpdateWebhookRequest(
                tenant=tenant,
                webhook_id=webhook_id,
                webhook=webhooks_pb2.Webhook(destination_url="http://10.0.0.1/"),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(error) == ["webhook.destination_url"]
    await expect_error(
        stubs.webhooks.RetryDelivery(
            webhooks_pb2.RetryDeliveryRequest(tenant=tenant, webhook_id=webhook_id, sequence=1)
        ),
        grpc.StatusCode.NOT_FOUND,
    )


# Delivery ----------------------------------------------------------------------------------


async def test_events_arrive_signed_in_order_and_only_of_the_endpoint_types(
    store: Store, stubs: Stubs, deliver: WebhookDispatcher, tenant: str
) -> None:
    async with receiving() as receiver:
        await _create(
            stubs,
            tenant,
            receiver.url,
            headers={"X-Team": "pricing"},
            event_types=[CREATED, DELETED],
        )
        events = await _append(store, tenant, CREATED, EVENT_TYPES[1], DELETED, CREATED)
        arrived = await receiver.wait_for(3)
        await asyncio.sleep(0.3)  # nothing more comes: the updated event is not of its types
    assert [r.webhook_id for r in arrived] == [events[0].id, events[2].id, events[3].id]
    assert len(receiver.received) == 3
    verifier = Verifier(SECRET)
    for request, event in zip(arrived, [events[0], events[2], events[3]], strict=True):
        body = verifier.verify(request.body, request.headers)  # raises if the signature is wrong
        assert body["type"] == event.type
        assert body["data"] == event.payload
        assert body["timestamp"].endswith("Z")
        assert request.headers["x-team"] == "pricing"
        assert request.headers["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):
        Verifier("whsec_" + "A" * 32).verify(arrived[0].body, arrived[0].headers)


async def test_a_receiver_failing_three_times_gets_each_attempt_then_its_2xx(
    store: Store, stubs: Stubs, deliver: WebhookDispatcher, tenant: str
) -> None:
    async with receiving(statuses=[500, 503, 429, 204]) as receiver:
        webhook_id = await _create(stubs, tenant, receiver.url)
        first, second = await _append(store, tenant, CREATED, DELETED)
        arrived = await receiver.wait_for(5)
    assert [r.webhook_id for r in arrived] == [first.id] * 4 + [second.id]
    assert await _deliveries(stubs, tenant, webhook_id) == []  # settled, nothing recorded


async def test_410_turns_the_endpoint_inactive(
    store: Store, stubs: Stubs, deliver: WebhookDispatcher, tenant: str
) -> None:
    async with receiving(statuses=[410]) as receiver:
        webhook_id = await _create(stubs, tenant, receiver.url)
        await _append(store, tenant, CREATED, CREATED)
        await receiver.wait_for(1)
        request = webhooks_pb2.GetWebhookRequest(tenant=tenant, webhook_id=webhook_id)

        async def inactive() -> bool:
            return not (await stubs.webhooks.GetWebhook(request)).webhook.active

        await _until(inactive)
        await asyncio.sleep(0.3)
    assert len(receiver.received) == 1  # no retry, no next event
    assert (await stubs.webhooks.GetWebhook(request)).webhook.metadata.version == 2


async def test_after_the_last_retry_it_is_failed_listed_and_the_retry_call_delivers_it(
    store: Store, http: aiohttp.ClientSession, stubs: Stubs, deliver: WebhookDispatcher, tenant: str
) -> None:
    async with receiving(statuses=[500] * 4) as receiver:
        webhook_id = await _create(stubs, tenant, receiver.url)
        failing, following = await _append(store, tenant, CREATED, DELETED)
        arrived = await receiver.wait_for(5)
        assert [r.webhook_id for r in arrived] == [failing.id] * 4 + [following.id]
        deliveries = f"/customer-segment/{tenant}/webhooks/{webhook_id}/deliveries"
        async with http.get(deliveries, params={"status": "failed"}) as listed:
            (failed,) = await listed.json()
        assert failed["sequence"] == failing.sequence and failed["eventId"] == failing.id
        assert failed["status"] == "FAILED" and failed["attempts"] == 4
        assert failed["lastStatusCode"] == 500
        async with http.post(f"{deliveries}/{failing.sequence}/retry") as retried:
            assert retried.status == 202
            assert (await retried.json())["status"] == "RETRYING"
        async with http.post(f"{deliveries}/{following.sequence}/retry") as not_failed:
            assert not_failed.status == 404  # delivered at once: no record
        again = (await receiver.wait_for(6))[5]
        assert again.webhook_id == failing.id
        Verifier(SECRET).verify(again.body, again.headers)

        async def delivered() -> bool:
            found = await _deliveries(stubs, tenant, webhook_id)
            return [d.status for d in found] == [webhooks_pb2.DELIVERY_STATUS_DELIVERED]

        await _until(delivered)
    async with http.get(deliveries, params={"status": "sent"}) as bad:
        assert bad.status == 400 and (await bad.json())["details"]["field"] == "status"


async def test_a_name_resolving_to_a_forbidden_address_is_refused_at_delivery(
    store: Store, stubs: Stubs, deliver: WebhookDispatcher, tenant: str
) -> None:
    """https://evil.example passes the create check (a name); at delivery it resolves to the
    metadata address, and no connection is made."""
    webhook_id = await _create(stubs, tenant, "https://evil.example/hook")
    (event,) = await _append(store, tenant, CREATED)

    async def failed() -> list[webhooks_pb2.Delivery]:
        return await _deliveries(stubs, tenant, webhook_id, webhooks_pb2.DELIVERY_STATUS_FAILED)

    await _until(failed)
    (delivery,) = await failed()
    assert delivery.event_id == event.id and delivery.last_status_code == 0
    assert "169.254.169.254" in delivery.last_error and "link-local" in delivery.last_error


async def test_a_hanging_receiver_holds_one_slot_and_others_are_served_meanwhile(
    store: Store, stubs: Stubs, deliver: WebhookDispatcher, tenant: str
) -> None:
    async with receiving(hold=asyncio.Event()) as hanging, receiving() as healthy:
        await _create(stubs, tenant, hanging.url)
        await _create(stubs, tenant, healthy.url)
        events = await _append(store, tenant, CREATED, CREATED, CREATED)
        arrived = await healthy.wait_for(3)
        assert [r.webhook_id for r in arrived] == [e.id for e in events]
        # The hanging one has its first event only, retried after each timeout, in order.
        # (Its first POST may reach it after the healthy one got all three.)
        assert {r.webhook_id for r in await hanging.wait_for(1)} == {events[0].id}


async def test_two_dispatchers_on_one_database_deliver_each_event_once(
    store: Store, stubs: Stubs, deliver: WebhookDispatcher, tenant: str
) -> None:
    """As two workers or instances would: both claim at every poll, one holds each endpoint."""
    other = WebhookDispatcher(store, FAST)
    await other.start()
    try:
        async with receiving() as receiver:
            for name in "ab":
                await _create(stubs, tenant, f"{receiver.url}/{name}")
            events = [
                event for _ in range(3) for event in await _append(store, tenant, *[CREATED] * 10)
            ]
            await receiver.wait_for(2 * len(events))
            await asyncio.sleep(0.3)  # time for a duplicate, if the other one sent it too
    finally:
        await other.stop()
    for name in "ab":
        sent = [r.webhook_id for r in receiver.received if r.path == f"/hook/{name}"]
        assert sent == [event.id for event in events]
