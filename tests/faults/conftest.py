"""Fixtures of the fault suite: servers the tests own, a fresh database per test, and the
``healthapp`` command as a real process.

The suite never uses ``DATABASE_URL`` / ``REDIS_URL``: it stops and restarts its servers,
which it may only do to servers it started itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from healthapp.app import create_app
from healthapp.config import Testing
from healthapp.database import make_engine, sqlalchemy_url
from healthapp.migrate import upgrade
from healthapp.supervisor import worker_with_beat_command
from tests.conftest import _admin_conninfo
from tests.factories import ApiClient
from tests.faults.servers import OwnedPostgres, OwnedRedis
from tests.processes import stop

#: Every ``healthapp`` command a test runs is killed past this many seconds.
COMMAND_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="package")
def owned_postgres() -> Iterator[OwnedPostgres]:
    """One embedded PostgreSQL for the fault suite; each test gets its own database on it.

    Its folder is not under pytest's temporary root: run as root, the server runs as an
    unprivileged user, and every pytest session that starts makes that root private again,
    which would cut a server started by another session off its own files.
    """
    folder = Path(tempfile.mkdtemp(prefix="healthapp-faults-"))
    try:
        server = OwnedPostgres(folder)
        yield server
        server.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fault_database(owned_postgres: OwnedPostgres) -> Iterator[str]:
    """A migrated database on the owned server, dropped after the test (which may have left
    the server stopped: it is started again first)."""
    name = f"faults_{uuid.uuid4().hex[:10]}"
    admin = _admin_conninfo(owned_postgres.url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = (
        make_url(sqlalchemy_url(owned_postgres.url))
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    upgrade(url)
    yield url
    if not owned_postgres.running:
        owned_postgres.start()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fault_engine(fault_database: str) -> Iterator[Engine]:
    engine = make_engine(fault_database, timeout_seconds=2)
    yield engine
    engine.dispose()


@pytest.fixture
def fault_api(fault_database: str, fault_engine: Engine) -> ApiClient:
    """Users, machines and tokens in the test's database (the servers share the key)."""
    settings = Testing()
    settings.DATABASE_URL = fault_database
    settings.REDIS_URL = None
    app = create_app(settings, engine=fault_engine)
    return ApiClient(app, app.test_client())


@pytest.fixture
def owned_redis(tmp_path: Path) -> Iterator[OwnedRedis]:
    server = OwnedRedis(tmp_path / "redis")
    yield server
    server.close()


def healthapp_command(
    *args: str, database_url: str, redis_url: str, timeout: float = COMMAND_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    """Run ``healthapp ARGS`` to its end (killed past ``timeout``), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "healthapp.cli", *args],
        env=command_env(database_url, redis_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def command_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "HEALTHAPP_ENV": "testing",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def running_worker(database_url: str, redis_url: str, log_path: Path) -> Iterator[None]:
    """``celery worker -B`` as ``healthapp run`` starts it, passes every second, logging to
    ``log_path``; it must still run when the block ends, and is stopped then."""
    env = {**command_env(database_url, redis_url), "SYNC_INTERVAL_SECONDS": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            worker_with_beat_command("WARNING"),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
    finally:
        stop(process, group=True, timeout=20)


def seed_patients(engine: Engine, *, users: int, checkups_per_user: int, prefix: str) -> None:
    """``users`` patients with a machine's worth of check-ups each and their outbox rows,
    as uploads would leave them; a few set-based statements."""
    with engine.begin() as conn:
        machine_id = uuid.uuid4()
        conn.execute(
            text(
                "INSERT INTO machines (id, machine_type, manufacturer, serial_number)"
                " VALUES (:id, 'heart_rate', 'Acme Medical', :serial)"
            ),
            {"id": machine_id, "serial": f"SN-{machine_id.hex[:12]}"},
        )
        conn.execute(
            text(
                "INSERT INTO users (id, username, email, role, password_hash)"
                " SELECT gen_random_uuid(), :prefix || lpad(n::text, 5, '0'),"
                " :prefix || n || '@example.com', 'patient', '!'"
                " FROM generate_series(1, :users) AS n"
            ),
            {"prefix": prefix, "users": users},
        )
        conn.execute(
            text(
                "INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,"
                " test_taken_by, taken_at)"
                " SELECT gen_random_uuid(), u.id, :machine, 'heart_rate',"
                " jsonb_build_object('bpm', 50 + n % 60), 'nurse 1',"
                " timestamptz '2026-01-01' - n * interval '1 hour'"
                " FROM users u CROSS JOIN generate_series(1, :per_user) AS n"
                " WHERE u.username LIKE :pattern"
            ),
            {"machine": machine_id, "per_user": checkups_per_user, "pattern": f"{prefix}%"},
        )
        enqueue_all(conn, prefix=prefix)


def enqueue_all(conn: Any, *, prefix: str) -> None:
    """An outbox row for every user whose name starts with ``prefix``."""
    conn.execute(
        text(
            "INSERT INTO report_outbox (user_id, username)"
            " SELECT id, username FROM users WHERE username LIKE :pattern ORDER BY username"
        ),
        {"pattern": f"{prefix}%"},
    )


def outbox_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM report_outbox")).scalar_one())
