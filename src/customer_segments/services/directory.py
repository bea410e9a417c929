"""Use cases of the customer directory (display data shown with assignments)."""

from __future__ import annotations

from customer_segments.domain import validation
from customer_segments.domain.principal import Principal
from customer_segments.services.audit import authorized_write
from customer_segments.services.authorization import UseCase
from customer_segments.store.store import Store


def _text(value: str, field: str) -> str | None:
    return validation.display_text(value, field) or None


async def upsert_customer(
    store: Store,
    principal: Principal,
    tenant: str,
    customer_id: str,
    first_name: str,
    last_name: str,
    email: str,
) -> None:
    with authorized_write(principal, UseCase.UPSERT_CUSTOMER, tenant, None):
        validation.tenant(tenant)
        validation.identifier(customer_id, "customer_id")
        values = (
            _text(first_name, "first_name"),
            _text(last_name, "last_name"),
            _text(email, "email"),
        )
        async with store.write() as connection:
            await store.directory.upsert_customer(connection, tenant, customer_id, *values)


async def upsert_legal_entity(
    store: Store, principal: Principal, tenant: str, legal_entity_id: str, name: str
) -> None:
    with authorized_write(principal, UseCase.UPSERT_LEGAL_ENTITY, tenant, None):
        validation.tenant(tenant)
        validation.identifier(legal_entity_id, "legal_entity_id")
        text = _text(name, "name")
        async with store.write() as connection:
            await store.directory.upsert_legal_entity(connection, tenant, legal_entity_id, text)
