"""Indexes for search: modification time, assignment type, legal entity, and mixins (GIN).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "customer_assignments"
INDEXES = {
    "ix_customer_assignments_by_modified_at": [
        "tenant",
        "segment_id",
        "modified_at",
        "customer_id",
        "legal_entity_id",
    ],
    "ix_customer_assignments_by_type": [
        "tenant",
        "segment_id",
        "assignment_type",
        "customer_id",
        "legal_entity_id",
    ],
    "ix_customer_assignments_by_legal_entity": [
        "tenant",
        "segment_id",
        "legal_entity_id",
        "customer_id",
    ],
}
MIXINS_INDEX = "ix_customer_assignments_mixins"


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, TABLE, columns)
    if op.get_bind().dialect.name == "postgresql":
        # Trusted since PostgreSQL 13: the database owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        op.create_index(
            MIXINS_INDEX,
            TABLE,
            ["tenant", "segment_id", "mixins"],
            postgresql_using="gin",
            postgresql_ops={"mixins": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(MIXINS_INDEX, TABLE)
    for name in INDEXES:
        op.drop_index(name, TABLE)
