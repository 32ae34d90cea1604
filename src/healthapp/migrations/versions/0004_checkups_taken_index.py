"""an index for staff lists of every user's check-ups, newest first

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_checkups_taken"


def upgrade() -> None:
    # CONCURRENTLY: uploads keep writing while a large table is indexed. It cannot run in a
    # transaction, so this step commits what came before it. A build whose migrator was
    # killed may have finished anyway (kept) or died half-way, leaving an invalid index
    # (dropped, then built again).
    with op.get_context().autocommit_block():
        if context.is_offline_mode():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        else:
            valid = (
                op.get_bind()
                .execute(
                    sa.text(
                        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"
                    ),
                    {"name": INDEX},
                )
                .scalar()
            )
            if valid is False:
                op.execute(f"DROP INDEX CONCURRENTLY {INDEX}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON checkups (taken_at DESC, id DESC)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
