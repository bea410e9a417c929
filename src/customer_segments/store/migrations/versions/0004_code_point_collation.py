"""Text columns compare and sort by code point on PostgreSQL (COLLATE "C"), as on SQLite.

Without it, sort order, cursors and `q` comparisons followed the database's default collation
(en-US puts "_x" < "a" < "ä" < "B"; SQLite and "C" put "B" < "_x" < "a" < "ä"). Changing only
the collation rewrites no rows; PostgreSQL rebuilds the indexes on these columns, which then
serve the code-point sorts. SQLite compares by code point already (BINARY): nothing to do.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported: a migration must not change when the code does.
# The referenced table (segments) before the one whose foreign key points at it.
COLUMNS: dict[str, list[tuple[str, int]]] = {
    "segments": [("tenant", 16), ("id", 255), ("status", 16), ("site_code", 255)],
    "customer_assignments": [
        ("tenant", 16),
        ("segment_id", 255),
        ("customer_id", 255),
        ("legal_entity_id", 255),
        ("assignment_type", 16),
    ],
    "customers": [
        ("tenant", 16),
        ("id", 255),
        ("first_name", 255),
        ("last_name", 255),
        ("email", 255),
    ],
    "legal_entities": [("tenant", 16), ("id", 255), ("name", 255)],
}


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        # One ALTER TABLE per table, so that each index is rebuilt once.
        changes = ", ".join(
            f'ALTER COLUMN {name} TYPE VARCHAR({length}) COLLATE "{collation}"'
            for name, length in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
