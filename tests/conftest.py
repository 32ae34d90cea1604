"""Fixtures on real servers: PostgreSQL and Redis, each test isolated.

With ``DATABASE_URL`` set, the suite creates a throwaway database on that server (and drops
it at the end); without it, it starts an embedded PostgreSQL in a temporary folder. Likewise
``REDIS_URL`` (the suite uses logical database 15 of it and flushes it) or an embedded Redis.
Every test that uses either store leaves it empty (``isolated``, below): no test needs to ask.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

os.environ["HEALTHAPP_ENV"] = "testing"

from healthapp.app import create_app
from healthapp.config import Testing
from healthapp.database import make_engine, sqlalchemy_url
from healthapp.migrate import upgrade
from healthapp.models import metadata
from tests.factories import ApiClient, synced_patient

REDIS_TEST_DB = 15
#: The trigger of migration 0002 that makes ``audit_events`` append-only.
APPEND_ONLY_TRIGGER = "audit_events_append_only"


def _admin_conninfo(url: str) -> str:
    parsed = make_url(sqlalchemy_url(url)).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server for the suite: ``DATABASE_URL``'s or an embedded one."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from healthapp.embedded import start_postgres

    server = start_postgres(tmp_path_factory.mktemp("embedded"), database="postgres")
    yield server.url
    server.stop()


@contextmanager
def empty_database(server_url: str, *, prefix: str) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database on ``server_url``'s server, dropped
    afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _admin_conninfo(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(sqlalchemy_url(server_url)).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database, migrated to head, dropped at the end of the session."""
    with empty_database(postgres_server_url, prefix="healthapp_test") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the suite: logical database 15 of ``REDIS_URL``, or an embedded server."""
    url = os.environ.get("REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        kwargs = client.connection_pool.connection_kwargs
        client.close()
        if "path" in kwargs:
            yield f"unix://{kwargs['path']}?db={REDIS_TEST_DB}"
        else:
            host, port = kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
            yield f"redis://{host}:{port}/{REDIS_TEST_DB}"
        return
    from healthapp.embedded import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def _redis_keeper(redis_url: str) -> Iterator[redis.Redis]:
    """The client that empties the test Redis between tests."""
    client: redis.Redis = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis (empty at the start of the test, as for every test)."""
    client: redis.Redis = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str) -> Testing:
    settings = Testing()
    settings.DATABASE_URL = database_url
    settings.REDIS_URL = None  # rate limits in memory unless a test asks for Redis
    return settings


@pytest.fixture(scope="session")
def app(settings: Testing, engine: Engine) -> Any:
    return create_app(settings, engine=engine)


_TABLES = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)


def truncate_all(engine: Engine) -> None:
    """Empty every table and restart its identities, in one statement.

    ``audit_events`` refuses TRUNCATE (it is append-only); the suite owns the table, so it
    lifts that trigger for this one transaction, as only a table owner can.
    """
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE audit_events DISABLE TRIGGER {APPEND_ONLY_TRIGGER}"))
        conn.execute(text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
        conn.execute(text(f"ALTER TABLE audit_events ENABLE TRIGGER {APPEND_ONLY_TRIGGER}"))


@pytest.fixture(autouse=True)
def isolated(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that used the suite's PostgreSQL or Redis leaves it empty (and meets Redis empty).

    Not savepoint rollback: uploads COPY on the driver connection; sync, subprocesses connect anew.
    """
    # ``fixturenames`` is the test's whole fixture closure: ``engine``, ``app``, ``api``...
    # all stand on ``database_url``, ``redis_client`` and the apps' settings on ``redis_url``.
    engine = request.getfixturevalue("engine") if "database_url" in request.fixturenames else None
    keeper = (
        request.getfixturevalue("_redis_keeper") if "redis_url" in request.fixturenames else None
    )
    if keeper is not None:
        keeper.flushdb()  # before too: ``REDIS_URL``'s db 15 may hold an earlier session's keys
    yield
    if engine is not None:
        # Always: a check for rows first (1 ms) would spare the TRUNCATE (9 ms) in one test of 12.
        truncate_all(engine)
    if keeper is not None:
        keeper.flushdb()


@pytest.fixture
def db_session(app: Any) -> Iterator[Any]:
    """A session in an app context."""
    from healthapp.database import db

    with app.app_context():
        yield db.session


@pytest.fixture
def client(app: Any) -> FlaskClient:
    """A test client of the Core API."""
    return app.test_client()


@pytest.fixture
def api(app: Any, client: FlaskClient) -> ApiClient:
    """A test client that creates users and machines and calls the API as any of them."""
    return ApiClient(app, client)


@pytest.fixture
def tmp_instance(tmp_path: Path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def synced(api: ApiClient, sync: Any) -> dict[str, Any]:
    """A patient whose report is in Redis, and a path of their data on each API (for the
    tests that ask both APIs the same thing; ``sync`` is the directory's)."""
    patient, _ = synced_patient(api, sync)
    return {
        "patient": patient,
        "core": f"/api/v1/users/{patient.id}",
        "reports": f"/api/v1/users/{patient.username}/",
    }
