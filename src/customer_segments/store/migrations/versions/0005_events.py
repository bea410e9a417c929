"""Change events: the outbox, per-tenant sequences, outbox consumers and webhooks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from customer_segments.store.tables import JsonDocument, UtcDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> Any:
    # Written out rather than imported (a migration must not change when the code does): text
    # compared by code point, as migration 0004 made every other key column.
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("tenant", _text(16), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("id", _text(36), nullable=False),
        sa.Column("type", _text(64), nullable=False),
        sa.Column("segment_id", _text(255), nullable=False, server_default=""),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("payload", JsonDocument, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "sequence", name="pk_events"),
        sa.UniqueConstraint("tenant", "id", name="uq_events_tenant_id"),
    )
    op.create_index("ix_events_tenant_occurred_at", "events", ["tenant", "occurred_at"])
    op.create_table(
        "event_sequences",
        sa.Column("tenant", _text(16), nullable=False),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant", name="pk_event_sequences"),
    )
    op.create_table(
        "event_consumers",
        sa.Column("consumer", _text(64), nullable=False),
        sa.Column("tenant", _text(16), nullable=False),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", _text(64), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("tenant", "consumer", name="pk_event_consumers"),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("tenant", _text(16), nullable=False),
        sa.Column("id", _text(255), nullable=False),
        sa.Column("destination_url", sa.String(2048), nullable=False),
        sa.Column("secret_key", sa.String(255), nullable=False),
        sa.Column("headers", JsonDocument, nullable=False),
        sa.Column("event_types", JsonDocument, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", _text(64), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("modified_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_webhook_endpoints"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("tenant", _text(16), nullable=False),
        sa.Column("endpoint_id", _text(255), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("event_id", _text(36), nullable=False),
        sa.Column("status", _text(16), nullable=False),
        sa.Column("attempts", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("last_status_code", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.Column("modified_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "endpoint_id", "sequence", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["tenant", "endpoint_id"],
            ["webhook_endpoints.tenant", "webhook_endpoints.id"],
            name="fk_webhook_deliveries_tenant_endpoint_id_webhook_endpoints",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_tenant_endpoint_id_status_sequence",
        "webhook_deliveries",
        ["tenant", "endpoint_id", "status", "sequence"],
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("event_consumers")
    op.drop_table("event_sequences")
    op.drop_table("events")
