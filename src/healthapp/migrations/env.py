"""Alembic environment: the URL comes from the caller or from the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from healthapp.extensions import sqlalchemy_url
from healthapp.models import metadata

config = context.config

#: Held while migrating: processes that each run ``healthapp migrate`` as they start (the
#: Core API and the sync worker) take turns, and the later ones find nothing left to do.
MIGRATION_LOCK_KEY = 0x6865616C74686D67


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from healthapp.config import load_settings

        url = load_settings().DATABASE_URL
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
