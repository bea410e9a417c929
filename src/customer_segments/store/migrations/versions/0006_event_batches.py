"""Change events of a bulk chunk as one row (event_batches), written on PostgreSQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from customer_segments.store.tables import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> Any:
    # Written out rather than imported (a migration must not change when the code does).
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _array(item: Any) -> Any:
    # An array on PostgreSQL; JSON on SQLite, which never writes the table.
    return sa.JSON().with_variant(postgresql.ARRAY(item), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_batches",
        sa.Column("tenant", _text(16), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("id", _text(36), nullable=False),
        sa.Column("segment_id", _text(255), nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("assignment_type", _text(32), nullable=False),
        sa.Column("customer_ids", _array(sa.String), nullable=False),
        sa.Column("legal_entity_ids", _array(sa.String), nullable=False),
        sa.Column("mixins", _array(sa.String), nullable=False),
        sa.Column("written_customer_ids", _array(sa.String), nullable=False),
        sa.Column("written_legal_entity_ids", _array(sa.String), nullable=False),
        sa.Column("versions", _array(sa.BigInteger), nullable=False),
        sa.Column("created_ats", _array(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("first_names", _array(sa.String), nullable=False),
        sa.Column("last_names", _array(sa.String), nullable=False),
        sa.Column("emails", _array(sa.String), nullable=False),
        sa.Column("legal_entity_names", _array(sa.String), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "sequence", name="pk_event_batches"),
    )
    op.create_index(
        "ix_event_batches_tenant_occurred_at", "event_batches", ["tenant", "occurred_at"]
    )


def downgrade() -> None:
    op.drop_table("event_batches")
