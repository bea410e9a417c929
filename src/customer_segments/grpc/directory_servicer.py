"""DirectoryService: customer and legal entity display data."""

from __future__ import annotations

from typing import Any

from customersegment.v1 import directory_pb2, directory_pb2_grpc
from grpc import aio

from customer_segments.grpc.auth_interceptor import caller
from customer_segments.services import directory
from customer_segments.store.store import Store

Context = aio.ServicerContext[Any, Any]


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def UpsertCustomer(
        self, request: directory_pb2.UpsertCustomerRequest, context: Context
    ) -> directory_pb2.UpsertCustomerResponse:
        await directory.upsert_customer(
            self.store,
            caller(),
            request.tenant,
            request.customer_id,
            request.first_name,
            request.last_name,
            request.email,
        )
        return directory_pb2.UpsertCustomerResponse()

    async def UpsertLegalEntity(
        self, request: directory_pb2.UpsertLegalEntityRequest, context: Context
    ) -> directory_pb2.UpsertLegalEntityResponse:
        await directory.upsert_legal_entity(
            self.store, caller(), request.tenant, request.legal_entity_id, request.name
        )
        return directory_pb2.UpsertLegalEntityResponse()
