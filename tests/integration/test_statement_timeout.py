"""A Core API statement that runs past STATEMENT_TIMEOUT_SECONDS is cancelled by PostgreSQL
and answered 503, instead of holding its request, thread and connection for as long as it
waits."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy.engine import make_url

from healthapp import config
from healthapp.app import create_app
from healthapp.domain.roles import Role
from tests.factories import ApiClient


def test_a_statement_waiting_on_a_lock_ends_with_a_503(settings: config.Testing, api: ApiClient):
    operator = api.user(Role.OPERATOR)
    quick = config.Testing()
    quick.DATABASE_URL = settings.DATABASE_URL
    quick.REDIS_URL = None
    quick.STATEMENT_TIMEOUT_SECONDS = 1
    app = create_app(quick)  # an engine of its own, made from these settings
    client = app.test_client()
    headers = {"Authorization": f"Bearer {operator.access_token}"}
    assert client.get("/api/v1/checkups/", headers=headers).status_code == 200

    url = make_url(settings.DATABASE_URL).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as holder:
        holder.execute("LOCK TABLE checkups IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        answer = client.get("/api/v1/checkups/", headers=headers)
        waited = time.monotonic() - started
        # The cancelled statement no longer waits on the lock.
        waiting = holder.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
        holder.rollback()

    assert answer.status_code == 503
    assert answer.content_type == "application/problem+json"
    assert answer.json["detail"] == "The database did not answer in time; retry shortly."
    assert answer.headers["Retry-After"] == "5"
    assert 1 <= waited < 3
    assert waiting == (0,)
    # And the connection the statement ran on serves the next request.
    assert client.get("/api/v1/checkups/", headers=headers).status_code == 200
    app.extensions["healthapp.db"].dispose()
