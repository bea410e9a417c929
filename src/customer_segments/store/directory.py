"""Customer and legal entity display data, fed by internal callers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.store.database import DialectInsert
from customer_segments.store.tables import customers, legal_entities


class DirectoryRepository:
    def __init__(self, insert: DialectInsert) -> None:
        customer = insert(customers)
        self._upsert_customer = customer.on_conflict_do_update(
            index_elements=[customers.c.tenant, customers.c.id],
            set_={
                "first_name": customer.excluded.first_name,
                "last_name": customer.excluded.last_name,
                "email": customer.excluded.email,
            },
        )
        legal_entity = insert(legal_entities)
        self._upsert_legal_entity = legal_entity.on_conflict_do_update(
            index_elements=[legal_entities.c.tenant, legal_entities.c.id],
            set_={"name": legal_entity.excluded.name},
        )

    async def upsert_customer(
        self,
        connection: AsyncConnection,
        tenant: str,
        customer_id: str,
        first_name: str | None,
        last_name: str | None,
        email: str | None,
    ) -> None:
        await connection.execute(
            self._upsert_customer,
            {
                "tenant": tenant,
                "id": customer_id,
                "first_name": first_name,
                "last_name": last_name,
                "email": email,
            },
        )

    async def upsert_legal_entity(
        self, connection: AsyncConnection, tenant: str, legal_entity_id: str, name: str | None
    ) -> None:
        await connection.execute(
            self._upsert_legal_entity, {"tenant": tenant, "id": legal_entity_id, "name": name}
        )
