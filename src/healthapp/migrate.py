"""Applying the Alembic migrations that ship inside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")

#: Held while migrating: processes that each run ``healthapp migrate`` as they start (the
#: Core API and the sync worker) take turns, and the later ones find nothing left to do.
MIGRATION_LOCK_KEY = 0x6865616C74686D67


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` with the packaged scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at ``database_url`` up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)
