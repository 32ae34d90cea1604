"""Building and dropping an index on a live table from a migration.

``CREATE INDEX CONCURRENTLY`` lets writes go on while a large table is indexed. It cannot
run in a transaction, so these run in Alembic's autocommit block, which commits what the
migration run did before them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op


def create_index_concurrently(name: str, definition: str) -> None:
    """``CREATE INDEX CONCURRENTLY name ON definition``, after a killed earlier try.

    A migrator killed during the build may leave the index finished (its build went on
    without it), kept as it is, or invalid (the build died half-way), dropped and built
    again. Offline SQL cannot look, and drops whatever is there.
    """
    with op.get_context().autocommit_block():
        if context.is_offline_mode():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        else:
            valid = (
                op.get_bind()
                .execute(
                    sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
                    {"n": name},
                )
                .scalar()
            )
            if valid is False:
                op.execute(f"DROP INDEX CONCURRENTLY {name}")
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}")


def drop_index_concurrently(name: str) -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
