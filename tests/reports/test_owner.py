"""Reports are authorised by user id, never by username alone (SPEC §14).

The report stored for a username records the id of the user it is of, and a patient's
token reads it only if its ``sub`` is that id: a token of a deleted user never reads a later
user who took the same name. Each request is sent through the first-page layer and through
Flask alone, so both paths are held to it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import text

from healthapp.domain.report_keys import META_FIELD, OWNER_FIELD, WATERMARK_KEY, user_key
from healthapp.domain.roles import Role
from tests.reports.test_first_page import add_checkups, bearer, both, flask_requests

#: Every kind of read of one user's report: the first page, filters, a date range, a page
#: size, and (filled in per test) the second page's cursor.
QUERIES = ["", "?limit=2", "?checkup_type=heart_rate", "?from=2000-01-01T00:00:00Z", "?cursor="]


def delete_in_postgres(engine: Any, user: Any) -> None:
    """Delete ``user`` and queue their report's removal, as the service does, in SQL: the
    check under test is then the report's owner, not anything done to the user's tokens."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
        conn.execute(
            text("INSERT INTO report_outbox (user_id, username) VALUES (:id, :name)"),
            {"id": user.id, "name": user.username},
        )


@pytest.fixture
def reused(api: Any, engine: Any, sync: Any, reports: Any) -> dict[str, Any]:
    """A patient deleted after their report was synced, and a new patient who took the
    same username, whose report is synced: the old token is still valid."""
    deleted = api.user()
    add_checkups(api, engine, deleted, 3)
    sync()
    path = f"/api/v1/users/{deleted.username}/"
    assert reports.get(path, headers=bearer(deleted)).status_code == 200
    delete_in_postgres(engine, deleted)
    successor = api.user(username=deleted.username)
    add_checkups(api, engine, successor, 60)  # more than a page: there is a second page
    sync()
    cursor = reports.get(path, headers=bearer(successor)).json["next_cursor"]
    assert cursor is not None
    return {
        "deleted": deleted,
        "successor": successor,
        "paths": [path + query + (cursor if query == "?cursor=" else "") for query in QUERIES],
    }


def test_a_deleted_users_token_never_reads_the_next_owner_of_the_name(reused, reports_app):
    deleted, successor = reused["deleted"], reused["successor"]
    assert deleted.id != successor.id
    assert deleted.username == successor.username
    missing = reports_app.test_client().get(
        "/api/v1/users/nobody-here/", headers=bearer(reused["successor"])
    )

    for path in reused["paths"]:
        with flask_requests(reports_app) as handled:
            served, flask_only = both(reports_app, path, bearer(deleted))
        assert served.status_code == flask_only.status_code == 404, path
        assert served.json == flask_only.json == missing.json, path
        assert handled == [path.partition("?")[0]] * 2  # the first-page layer declined it
    head = reports_app.test_client().head(reused["paths"][0], headers=bearer(deleted))
    assert head.status_code == 404


def test_the_owner_reads_their_report_on_every_path(reused, reports_app):
    successor = reused["successor"]
    for path in reused["paths"]:
        served, flask_only = both(reports_app, path, bearer(successor))
        assert served.status_code == flask_only.status_code == 200, path
        assert served.json["username"] == successor.username
        assert served.json["checkups"], path
    first = reports_app.test_client()
    first.get(reused["paths"][0], headers=bearer(successor))  # the token is known now
    with flask_requests(reports_app) as handled:
        served = first.get(reused["paths"][0], headers=bearer(successor))
    assert served.status_code == 200
    assert handled == []  # answered by the first-page layer


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMIN])
def test_staff_read_every_report_on_every_path(api, reused, reports_app, role):
    staff = api.user(role)
    for path in reused["paths"]:
        served, flask_only = both(reports_app, path, bearer(staff))
        assert served.status_code == flask_only.status_code == 200, path
        assert served.json["username"] == reused["successor"].username


def strip_owner(redis_client: Any, generation: int, username: str) -> None:
    """Make ``username``'s report look like one stored before owners were recorded."""
    key = user_key(generation, username)
    meta = orjson.loads(redis_client.hget(key, META_FIELD))
    del meta["user_id"]
    redis_client.hset(key, META_FIELD, orjson.dumps(meta))
    redis_client.hdel(key, OWNER_FIELD)
    redis_client.delete(WATERMARK_KEY)  # the code before kept no watermark either


def test_a_report_stored_without_an_owner_is_read_by_staff_only_until_the_sync_rebuilds(
    api, engine, sync, reports, reports_app, redis_client
):
    patient, operator = api.user(), api.user(Role.OPERATOR)
    add_checkups(api, engine, patient, 60)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    assert reports.get(path, headers=bearer(patient)).status_code == 200
    strip_owner(redis_client, int(redis_client.get("rpt:current")), patient.username)

    for query in ("", "?limit=2"):
        served, flask_only = both(reports_app, path + query, bearer(patient))
        assert served.status_code == flask_only.status_code == 404, query
        assert reports.get(path + query, headers=bearer(operator)).status_code == 200, query

    stats = sync()  # the next pass, with nothing in the outbox, rebuilds the old layout

    assert stats.entries_processed == 0
    for query in ("", "?limit=2"):
        served, flask_only = both(reports_app, path + query, bearer(patient))
        assert served.status_code == flask_only.status_code == 200, query
