"""Segments, customer assignments and the customer directory.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from customer_segments.store.tables import JsonDocument, UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("tenant", sa.String(16), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("name", JsonDocument, nullable=False),
        sa.Column("description", JsonDocument, nullable=False),
        sa.Column("validity_from", UtcDateTime, nullable=True),
        sa.Column("validity_to", UtcDateTime, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("site_code", sa.String(255), nullable=False),
        sa.Column("mixins", JsonDocument, nullable=False),
        sa.Column("metadata_mixins", JsonDocument, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("modified_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_segments"),
    )
    op.create_table(
        "customer_assignments",
        sa.Column("tenant", sa.String(16), nullable=False),
        sa.Column("segment_id", sa.String(255), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("legal_entity_id", sa.String(255), nullable=False, server_default=""),
        sa.Column("assignment_type", sa.String(16), nullable=False),
        sa.Column("mixins", JsonDocument, nullable=False),
        sa.Column("metadata_mixins", JsonDocument, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("modified_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "segment_id", "customer_id", "legal_entity_id", name="pk_customer_assignments"
        ),
        sa.ForeignKeyConstraint(
            ["tenant", "segment_id"],
            ["segments.tenant", "segments.id"],
            name="fk_customer_assignments_tenant_segment_id_segments",
        ),
    )
    op.create_index(
        "ix_customer_assignments_tenant_customer_id_legal_entity_id",
        "customer_assignments",
        ["tenant", "customer_id", "legal_entity_id"],
    )
    op.create_table(
        "customers",
        sa.Column("tenant", sa.String(16), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("first_name", sa.String(255), nullable=True),
        sa.Column("last_name", sa.String(255), nullable=True),
        sa.Column("email", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_customers"),
    )
    op.create_table(
        "legal_entities",
        sa.Column("tenant", sa.String(16), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_legal_entities"),
    )


def downgrade() -> None:
    op.drop_table("legal_entities")
    op.drop_table("customers")
    op.drop_index(
        "ix_customer_assignments_tenant_customer_id_legal_entity_id", "customer_assignments"
    )
    op.drop_table("customer_assignments")
    op.drop_table("segments")
