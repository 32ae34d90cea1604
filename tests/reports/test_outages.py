"""The Reports API when a store is down: PostgreSQL stopped (keeps serving), Redis (503)."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import text

from healthapp import config
from healthapp.database import make_engine
from healthapp.embedded import start_postgres, start_redis
from healthapp.extensions import make_redis
from healthapp.migrate import upgrade
from healthapp.reports.app import create_app
from healthapp.sync.passes import run_incremental_sync
from tests.factories import mint


def token(app: Any, user_id: uuid.UUID, username: str, role: str = "patient") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(app, user_id, username, role)}"}


def seed_user_with_checkups(engine: Any, username: str, count: int) -> uuid.UUID:
    """A user, a machine and ``count`` check-ups with the outbox row, straight in SQL."""
    user_id, machine_id = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, email, role, password_hash)"
                " VALUES (:id, :name, :email, 'patient', 'x')"
            ),
            {"id": user_id, "name": username, "email": f"{username}@example.com"},
        )
        conn.execute(
            text(
                "INSERT INTO machines (id, machine_type, serial_number)"
                " VALUES (:id, 'heart_rate', :serial)"
            ),
            {"id": machine_id, "serial": f"SN-{machine_id.hex[:8]}"},
        )
        conn.execute(
            text(
                "INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,"
                " taken_at) SELECT gen_random_uuid(), :uid, :mid, 'heart_rate',"
                " jsonb_build_object('bpm', 60 + n), now() - n * interval '1 minute'"
                " FROM generate_series(1, :count) AS n"
            ),
            {"uid": user_id, "mid": machine_id, "count": count},
        )
        conn.execute(
            text("INSERT INTO report_outbox (user_id, username) VALUES (:id, :name)"),
            {"id": user_id, "name": username},
        )
    return user_id


def reports_settings(redis_url: str) -> config.Testing:
    settings = config.Testing()
    settings.DATABASE_URL = None
    settings.REDIS_URL = redis_url
    settings.STORE_TIMEOUT_SECONDS = 1
    return settings


def test_reports_keep_answering_with_postgresql_stopped(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
):
    postgres = start_postgres(tmp_path / "pg", database="healthapp")
    stopped = False
    try:
        upgrade(postgres.url)
        engine = make_engine(postgres.url, timeout_seconds=2)
        user_id = seed_user_with_checkups(engine, "pg-outage", 12)
        run_incremental_sync(engine=engine, redis_client=redis_client)
        engine.dispose()
        postgres.stop()
        stopped = True

        app = create_app(reports_settings(redis_url))
        client = app.test_client()
        r = client.get("/api/v1/users/pg-outage/", headers=token(app, user_id, "pg-outage"))
        assert r.status_code == 200, r.json
        assert len(r.json["checkups"]) == 12
        assert client.get("/readyz").status_code == 200
    finally:
        if not stopped:
            postgres.stop()


def test_reports_answer_503_with_redis_stopped(tmp_path: Path, engine: Any):
    server = start_redis(tmp_path / "redis")
    app = create_app(reports_settings(server.url))
    client = app.test_client()
    user_id = uuid.uuid4()
    headers = token(app, user_id, "someone")
    assert client.get("/readyz").status_code == 200
    server.stop()

    r = client.get("/api/v1/users/someone/", headers=headers)

    assert r.status_code == 503
    assert r.content_type == "application/problem+json"
    assert r.json["status"] == 503
    assert r.headers["Retry-After"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    with contextlib.suppress(redis.RedisError):
        make_redis(server.url).close()


def test_a_redis_that_never_answers_costs_one_timeout():
    """A request meets the store timeout once: no retry of a timed-out command, and the
    first-page layer hands its error to the Flask app instead of asking Redis again."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections are accepted by the kernel and never answered
    try:
        port = silent.getsockname()[1]
        app = create_app(reports_settings(f"redis://127.0.0.1:{port}/0"))
        client = app.test_client()
        headers = token(app, uuid.uuid4(), "silent-redis")
        timeout = app.config["STORE_TIMEOUT_SECONDS"]
        # The first request verifies the token in Flask; the second goes through the
        # first-page layer, which meets the timeout before the Flask app does.
        for path in ["/api/v1/users/silent-redis/"] * 2 + ["/api/v1/users/silent-redis/?limit=1"]:
            started = time.monotonic()
            r = client.get(path, headers=headers)
            elapsed = time.monotonic() - started
            assert r.status_code == 503, r.json
            assert r.content_type == "application/problem+json"
            assert elapsed < 1.8 * timeout, f"{path} took {elapsed:.2f} s"
    finally:
        silent.close()
