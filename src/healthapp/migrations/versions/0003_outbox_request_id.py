"""outbox rows carry the id of the request that queued them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a default: adding it rewrites no row, on any table size.
    op.add_column("report_outbox", sa.Column("request_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("report_outbox", "request_id")
