"""The schema. The tenant leads every primary key and index, so that moving to tenant-sharded
PostgreSQL (tenant as distribution column) needs no redesign."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on both databases (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def code_point_text(length: int) -> Any:
    """Text compared and sorted by code point on both databases: SQLite's BINARY collation,
    and PostgreSQL's "C" whatever the database's default collation is (migration 0004). The
    column carries the collation, so its indexes serve the sorts and range scans."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


# jsonb on PostgreSQL (queryable, indexable); JSON text on SQLite.
JsonDocument: Any = JSON().with_variant(JSONB(), "postgresql")

ID = 255
# The predicates of the partial indexes (migration 0003 writes the same).
NOT_MANUAL = "assignment_type <> 'MANUAL'"
B2B = "legal_entity_id <> ''"

segments = Table(
    "segments",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("id", code_point_text(ID), nullable=False),
    Column("name", JsonDocument, nullable=False),
    Column("description", JsonDocument, nullable=False),
    Column("validity_from", UtcDateTime, nullable=True),
    Column("validity_to", UtcDateTime, nullable=True),
    Column("status", code_point_text(16), nullable=False),
    Column("site_code", code_point_text(ID), nullable=False),
    Column("mixins", JsonDocument, nullable=False),
    Column("metadata_mixins", JsonDocument, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("modified_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("tenant", "id"),
)

customer_assignments = Table(
    "customer_assignments",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("segment_id", code_point_text(ID), nullable=False),
    Column("customer_id", code_point_text(ID), nullable=False),
    # "" for B2C: part of the key, so it cannot be NULL.
    Column("legal_entity_id", code_point_text(ID), nullable=False, server_default=""),
    Column("assignment_type", code_point_text(16), nullable=False),
    Column("mixins", JsonDocument, nullable=False),
    Column("metadata_mixins", JsonDocument, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("modified_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("tenant", "segment_id", "customer_id", "legal_entity_id"),
    ForeignKeyConstraint(["tenant", "segment_id"], ["segments.tenant", "segments.id"]),
    # "Which segments is this customer in?"
    Index(None, "tenant", "customer_id", "legal_entity_id"),
    # Pages of a segment sorted by modification time (the key breaks ties in the same sweep).
    Index(
        "ix_customer_assignments_by_modified_at",
        "tenant",
        "segment_id",
        "modified_at",
        "customer_id",
        "legal_entity_id",
    ),
    # A segment's assignments of one type, or of one legal entity, in key order. Partial:
    # MANUAL and B2C rows, the common ones, are left out, so most writes skip both indexes
    # (measured: +10-35% bulk rows/s on the bare statement). A query for MANUAL rows gains
    # nothing from an index anyway (nearly every row matches); one for a legal entity, or for
    # another type, implies the predicate, and the planner proves it from the query's values.
    Index(
        "ix_customer_assignments_by_type",
        "tenant",
        "segment_id",
        "assignment_type",
        "customer_id",
        "legal_entity_id",
        postgresql_where=text(NOT_MANUAL),
        sqlite_where=text(NOT_MANUAL),
    ),
    Index(
        "ix_customer_assignments_by_legal_entity",
        "tenant",
        "segment_id",
        "legal_entity_id",
        "customer_id",
        postgresql_where=text(B2B),
        sqlite_where=text(B2B),
    ),
)

# Equality on mixins.<path> (q translates it to jsonb containment, @>). GIN with the btree_gin
# extension, so that the tenant still leads; PostgreSQL only.
MIXINS_INDEX = Index(
    "ix_customer_assignments_mixins",
    customer_assignments.c.tenant,
    customer_assignments.c.segment_id,
    customer_assignments.c.mixins,
    postgresql_using="gin",
    postgresql_ops={"mixins": "jsonb_path_ops"},
).ddl_if(dialect="postgresql")
# Alembic's comparison does not know ddl_if: tests skip these on other databases.
POSTGRESQL_ONLY_INDEXES = frozenset({MIXINS_INDEX.name})

customers = Table(
    "customers",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("id", code_point_text(ID), nullable=False),
    Column("first_name", code_point_text(ID), nullable=True),
    Column("last_name", code_point_text(ID), nullable=True),
    Column("email", code_point_text(ID), nullable=True),
    PrimaryKeyConstraint("tenant", "id"),
)

legal_entities = Table(
    "legal_entities",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("id", code_point_text(ID), nullable=False),
    Column("name", code_point_text(ID), nullable=True),
    PrimaryKeyConstraint("tenant", "id"),
)

# Change events (the transactional outbox). Written in the transaction of the change they
# describe; `sequence` counts per tenant, from 1, with no gap in commit order: it is taken from
# event_sequences, whose row for the tenant stays locked until the transaction ends.
events = Table(
    "events",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    # A UUID as text: the Standard Webhooks webhook-id and the JetStream Nats-Msg-Id.
    Column("id", code_point_text(36), nullable=False),
    # customer-segment.customer-assignment-created and the other Emporix event types.
    Column("type", code_point_text(64), nullable=False),
    # The segment the event is about ("" for none): WatchEvents filters on it.
    Column("segment_id", code_point_text(ID), nullable=False, server_default=""),
    Column("occurred_at", UtcDateTime, nullable=False),
    # The Emporix payload of the event, exactly as published.
    Column("payload", JsonDocument, nullable=False),
    PrimaryKeyConstraint("tenant", "sequence"),
    UniqueConstraint("tenant", "id"),
    # Pruning by age, tenant by tenant (the tenant leads every key, for sharding).
    Index(None, "tenant", "occurred_at"),
)


def _array(item: Any) -> Any:
    # An array on PostgreSQL; JSON on SQLite, which never writes the table (below).
    return JSON().with_variant(ARRAY(item), "postgresql")


# The change events of a bulk chunk, one row for the whole chunk, written on PostgreSQL by
# the chunk's own statement (store/assignments.py): events as rows cost the database about
# as much as the assignments themselves (65 against 50 µs of its CPU per row), a row per
# chunk of what the events tell about 10. Its events are the customer-assignment-created or
# -updated of each item, in request order, numbered `sequence - count + 1` to `sequence`
# (the last), in the same sequence as the events table's; store/events.py reads both as one
# outbox and builds each payload from what this row keeps (domain/events.py).
event_batches = Table(
    "event_batches",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    # A UUID as text; each event's id is derived from it and its position (store/events.py).
    Column("id", code_point_text(36), nullable=False),
    Column("segment_id", code_point_text(ID), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("assignment_type", code_point_text(32), nullable=False),
    # The items in request order: their keys and their mixins as the request gave them.
    Column("customer_ids", _array(String), nullable=False),
    Column("legal_entity_ids", _array(String), nullable=False),
    Column("mixins", _array(String), nullable=False),
    # What the database wrote, in the order it wrote it (keyed by the first two): versions,
    # creation instants and the directory's names when the chunk was written.
    Column("written_customer_ids", _array(String), nullable=False),
    Column("written_legal_entity_ids", _array(String), nullable=False),
    Column("versions", _array(BigInteger), nullable=False),
    Column("created_ats", _array(DateTime(timezone=True)), nullable=False),
    Column("first_names", _array(String), nullable=False),
    Column("last_names", _array(String), nullable=False),
    Column("emails", _array(String), nullable=False),
    Column("legal_entity_names", _array(String), nullable=False),
    PrimaryKeyConstraint("tenant", "sequence"),
    Index(None, "tenant", "occurred_at"),
)

event_sequences = Table(
    "event_sequences",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    # The sequence of the tenant's newest event (0 before its first).
    Column("last_sequence", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant"),
)

# How far a consumer of the outbox (the NATS publisher, one row per tenant) has come, and who
# holds it: a process claims a row by setting lease_owner and lease_until, so that with several
# workers or instances each event is published once in the normal case, and a dead holder's
# lease simply runs out.
event_consumers = Table(
    "event_consumers",
    metadata,
    Column("consumer", code_point_text(64), nullable=False),
    Column("tenant", code_point_text(16), nullable=False),
    Column("last_sequence", BigInteger, nullable=False),
    Column("lease_owner", code_point_text(64), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("tenant", "consumer"),
)

# Webhook endpoints (Emporix's "HTTP strategy"), per tenant. Deliveries to one endpoint go in
# sequence order: `last_sequence` is the newest event settled (delivered, or failed after the
# last retry and listed in webhook_deliveries); the lease works as for event_consumers.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("id", code_point_text(ID), nullable=False),
    Column("destination_url", String(2048), nullable=False),
    # whsec_<base64>; write-only over the API.
    Column("secret_key", String(255), nullable=False),
    Column("headers", JsonDocument, nullable=False),
    # [] for every type.
    Column("event_types", JsonDocument, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("last_sequence", BigInteger, nullable=False),
    Column("lease_owner", code_point_text(64), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("version", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("modified_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("tenant", "id"),
)

# One row per (endpoint, event) whose delivery is not yet settled or has failed for good.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("tenant", code_point_text(16), nullable=False),
    Column("endpoint_id", code_point_text(ID), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("event_id", code_point_text(36), nullable=False),
    # PENDING (being retried), FAILED (after the last retry), DELIVERED.
    Column("status", code_point_text(16), nullable=False),
    Column("attempts", BigInteger, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_status_code", BigInteger, nullable=True),
    Column("last_error", String(1024), nullable=True),
    Column("modified_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("tenant", "endpoint_id", "sequence"),
    ForeignKeyConstraint(
        ["tenant", "endpoint_id"],
        ["webhook_endpoints.tenant", "webhook_endpoints.id"],
        ondelete="CASCADE",
    ),
    Index(None, "tenant", "endpoint_id", "status", "sequence"),
)
