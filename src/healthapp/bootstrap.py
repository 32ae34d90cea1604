"""The wiring every entry point shares: stores built from settings (Cosmic Python's bootstrap).

The web apps, the sync worker and the command line get their PostgreSQL engine, their
session factory and their Redis client here, so each store is set up one way everywhere.
The Reports API uses only :func:`redis_client`; each store's adapter is imported inside the
function that builds it, so importing this module loads no SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from healthapp.config import Base, ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker


def engine(
    settings: Base, *, serves_requests: bool = False, pool_size: int | None = None
) -> Engine:
    """An engine on ``DATABASE_URL`` that gives up after ``STORE_TIMEOUT_SECONDS``.

    Only an engine that ``serves_requests`` has ``STATEMENT_TIMEOUT_SECONDS``: it is a
    deadline for requests, not for the worker's passes nor for a command's statements.
    """
    from healthapp.database import make_engine

    if not settings.DATABASE_URL:
        raise ConfigurationError(
            "DATABASE_URL is not set; `healthapp run` starts an embedded server"
        )
    return make_engine(
        settings.DATABASE_URL,
        pool_size=pool_size or settings.DATABASE_POOL_SIZE,
        timeout_seconds=settings.STORE_TIMEOUT_SECONDS,
        statement_timeout_seconds=settings.STATEMENT_TIMEOUT_SECONDS if serves_requests else 0,
    )


def session_factory(bound: Engine) -> sessionmaker[Session]:
    """Sessions on ``bound`` whose objects stay readable after the commit."""
    from healthapp.database import make_session_factory

    return make_session_factory(bound)


def redis_client(settings: Base, *, timeout_seconds: float | None = None) -> redis.Redis:
    """A client of ``REDIS_URL`` that gives up after ``timeout_seconds`` (default:
    ``STORE_TIMEOUT_SECONDS``)."""
    from healthapp.extensions import make_redis

    if not settings.REDIS_URL:
        raise ConfigurationError("REDIS_URL is not set; `healthapp run` starts an embedded server")
    if timeout_seconds is None:
        timeout_seconds = settings.STORE_TIMEOUT_SECONDS
    return make_redis(settings.REDIS_URL, timeout_seconds=timeout_seconds)
