"""The store: a database and the repositories that speak its dialect."""

from __future__ import annotations

from customer_segments.store.assignments import AssignmentRepository
from customer_segments.store.database import Database
from customer_segments.store.directory import DirectoryRepository
from customer_segments.store.event_consumers import EventConsumerRepository
from customer_segments.store.events import EventRepository
from customer_segments.store.segments import SegmentRepository
from customer_segments.store.webhooks import WebhookRepository


class Store:
    """Use cases open `read()`, `expensive_read()` or `write()` (one transaction) and call the
    repositories."""

    def __init__(self, database: Database, *, events: bool = True) -> None:
        self.database = database
        self.read = database.read
        self.expensive_read = database.expensive_read
        self.write = database.write
        self.single_statement = database.single_statement
        self.assignments = AssignmentRepository(database)
        self.segments = SegmentRepository(database)
        self.directory = DirectoryRepository(database.insert)
        self.events = EventRepository(database.insert, database.dialect, enabled=events)
        self.webhooks = WebhookRepository(database.insert)
        self.event_consumers = EventConsumerRepository(database.insert)

    async def close(self) -> None:
        await self.database.dispose()
