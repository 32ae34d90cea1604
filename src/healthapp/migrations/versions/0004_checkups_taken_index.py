"""an index for staff lists of every user's check-ups, newest first

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 08:00:00.000000
"""

from collections.abc import Sequence

from healthapp.migrations.online_index import create_index_concurrently, drop_index_concurrently

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_checkups_taken"


def upgrade() -> None:
    # Built while uploads go on writing (healthapp.migrations.online_index).
    create_index_concurrently(INDEX, "checkups (taken_at DESC, id DESC)")


def downgrade() -> None:
    drop_index_concurrently(INDEX)
