"""an index for the audit trail filtered by action, newest first

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Sequence

from healthapp.migrations.online_index import create_index_concurrently, drop_index_concurrently

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_audit_events_action_occurred"


def upgrade() -> None:
    # Built while reads and changes go on recording events (healthapp.migrations.online_index).
    create_index_concurrently(INDEX, "audit_events (action, occurred_at DESC, id DESC)")


def downgrade() -> None:
    drop_index_concurrently(INDEX)
