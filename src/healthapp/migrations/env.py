"""Alembic environment: the URL comes from the caller or from the settings."""

from __future__ import annotations

import time

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from healthapp.database import sqlalchemy_url
from healthapp.migrate import MIGRATION_LOCK_KEY
from healthapp.models import metadata

config = context.config

LOCK_RETRY_SECONDS = 0.2


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from healthapp.config import load_settings

        url = load_settings().DATABASE_URL
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return sqlalchemy_url(url)


def _take_migration_lock(connection: Connection) -> None:
    """Wait for the migration lock between short tries, holding no snapshot meanwhile.

    A migrator blocked inside ``pg_advisory_lock`` holds its statement's snapshot, and
    ``CREATE INDEX CONCURRENTLY`` in the migrator that has the lock waits for every older
    snapshot to go: PostgreSQL sees the deadlock and fails the waiting process.
    """
    lock = text("SELECT pg_try_advisory_lock(:k)")
    while not connection.execute(lock, {"k": MIGRATION_LOCK_KEY}).scalar_one():
        connection.commit()
        time.sleep(LOCK_RETRY_SECONDS)
    connection.commit()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _take_migration_lock(connection)
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
