"""The by-type and by-legal-entity indexes become partial: MANUAL and B2C rows stay out.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "customer_assignments"
# Written out rather than imported: a migration must not change when the code does.
INDEXES = {
    "ix_customer_assignments_by_type": (
        ["tenant", "segment_id", "assignment_type", "customer_id", "legal_entity_id"],
        "assignment_type <> 'MANUAL'",
    ),
    "ix_customer_assignments_by_legal_entity": (
        ["tenant", "segment_id", "legal_entity_id", "customer_id"],
        "legal_entity_id <> ''",
    ),
}


def upgrade() -> None:
    for name, (columns, predicate) in INDEXES.items():
        op.drop_index(name, TABLE)
        where = sa.text(predicate)
        op.create_index(name, TABLE, columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, (columns, _predicate) in INDEXES.items():
        op.drop_index(name, TABLE)
        op.create_index(name, TABLE, columns)
