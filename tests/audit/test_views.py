"""GET /api/v1/audit/: the trail for admins, newest first, filtered and paginated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from healthapp.domain.roles import Role
from tests.assertions import assert_problem
from tests.factories import ApiClient, audit_events

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AUDIT = "/api/v1/audit/"


def _insert(engine: Engine, rows: list[tuple[str, str, datetime]]) -> list[uuid.UUID]:
    """Events ``(subject, action, occurred_at)`` straight in SQL (INSERT is allowed)."""
    ids = [uuid.uuid4() for _ in rows]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_events (id, occurred_at, actor_username, actor_role, action,"
                " subject_username, details) VALUES (:id, :at, 'admin-1', 'admin', :action,"
                ' :subject, \'{"change": "update"}\')'
            ),
            [
                {"id": i, "subject": s, "action": a, "at": at}
                for i, (s, a, at) in zip(ids, rows, strict=True)
            ],
        )
    return ids


@pytest.fixture
def trail(engine: Engine) -> list[uuid.UUID]:
    """Seven events: alice's five a minute apart, bob's two; two share one instant."""
    return _insert(
        engine,
        [
            *[("alice", "profile.update", T0 + timedelta(minutes=n)) for n in range(5)],
            ("bob", "report.read", T0 + timedelta(minutes=2)),
            ("bob", "checkups.upload", T0 + timedelta(minutes=10)),
        ],
    )


def _get(api: ApiClient, admin: Any, query: str = "") -> Any:
    return api.get(f"{AUDIT}{query}", admin)


def test_admin_reads_every_event_newest_first(api: ApiClient, trail: list[uuid.UUID]) -> None:
    admin = api.user(Role.ADMIN)
    r = _get(api, admin)
    assert r.status_code == 200, r.json
    items = r.json["items"]
    moments = [item["occurred_at"] for item in items]
    assert len(items) == 8
    assert moments == sorted(moments, reverse=True)
    # The newest: the admin's own registration (by the system, as the factory makes users).
    assert (items[0]["action"], items[0]["subject_username"]) == ("user.create", admin.username)
    assert items[1]["subject_username"] == "bob"
    assert r.json["next_cursor"] is None
    assert set(items[0]) == {
        "id",
        "occurred_at",
        "actor_id",
        "actor_username",
        "actor_role",
        "action",
        "subject_id",
        "subject_username",
        "request_id",
        "details",
    }
    assert items[0]["occurred_at"].endswith("Z")


def test_filters_by_subject_action_and_time(api: ApiClient, trail: list[uuid.UUID]) -> None:
    admin = api.user(Role.ADMIN)
    alice = _get(api, admin, "?username=alice").json["items"]
    assert len(alice) == 5
    assert {item["subject_username"] for item in alice} == {"alice"}

    reads = _get(api, admin, "?action=report.read").json["items"]
    assert [item["subject_username"] for item in reads] == ["bob"]

    start = (T0 + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    end = (T0 + timedelta(minutes=4)).isoformat()
    window = _get(api, admin, f"?from={start}&to={end.replace('+', '%2B')}").json["items"]
    # ``from`` inclusive, ``to`` exclusive: minutes 2 (alice and bob) and 3.
    assert sorted(item["occurred_at"] for item in window) == [
        "2026-03-01T12:02:00Z",
        "2026-03-01T12:02:00Z",
        "2026-03-01T12:03:00Z",
    ]
    both = _get(api, admin, f"?username=bob&from={start}").json["items"]
    assert [item["action"] for item in both] == ["checkups.upload", "report.read"]
    assert _get(api, admin, "?username=nobody").json == {"items": [], "next_cursor": None}


def test_pages_walk_the_whole_trail_once(
    api: ApiClient, engine: Engine, trail: list[uuid.UUID]
) -> None:
    admin = api.user(Role.ADMIN)
    [registration] = audit_events(engine, action="user.create")  # the admin's, the newest
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = _get(api, admin, query).json
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert sorted(seen) == sorted(str(i) for i in [*trail, registration["id"]])
    assert len(set(seen)) == 8
    # Each page's read is recorded once it was read: a walk never meets its own reads.
    whole = _get(api, admin).json["items"]
    assert [item["action"] for item in whole[:4]] == ["audit.read"] * 4
    assert [item["id"] for item in whole[4:]] == seen


def test_pages_split_events_of_one_instant(api: ApiClient, engine: Engine) -> None:
    admin = api.user(Role.ADMIN)
    ids = _insert(engine, [("carol", "report.read", T0)] * 5)
    first = _get(api, admin, "?username=carol&limit=3").json
    rest = _get(api, admin, f"?username=carol&limit=3&cursor={first['next_cursor']}").json
    assert rest["next_cursor"] is None
    listed = [item["id"] for item in first["items"] + rest["items"]]
    assert sorted(listed) == sorted(str(i) for i in ids)


@pytest.mark.parametrize(
    ("query", "status", "loc"),
    [
        ("?cursor=not-a-cursor", 400, ["query", "cursor"]),
        ("?from=2026-03-01T12:00:00", 422, ["query", "from"]),
        ("?from=yesterday", 422, ["query", "from"]),
        ("?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", 422, ["query"]),
        ("?limit=0", 422, ["query", "limit"]),
        ("?limit=501", 422, ["query", "limit"]),
        ("?user=alice", 422, ["query", "user"]),
        (f"?username={'x' * 33}", 422, ["query", "username"]),
        ("?action=Not An Action!", 422, ["query", "action"]),
        ("?action=report", 422, ["query", "action"]),
    ],
)
def test_bad_queries_are_problems(api: ApiClient, query: str, status: int, loc: list[str]) -> None:
    r = _get(api, api.user(Role.ADMIN), query)
    assert_problem(r, status)
    assert any(error["loc"][: len(loc)] == loc for error in r.json["errors"]), r.json


@pytest.mark.parametrize("role", [Role.PATIENT, Role.OPERATOR])
def test_only_admins_read_the_trail(api: ApiClient, trail: list[uuid.UUID], role: Role) -> None:
    r = _get(api, api.user(role))
    assert_problem(r, 403)
    assert "alice" not in r.get_data(as_text=True)


def test_no_token_is_a_401(api: ApiClient, trail: list[uuid.UUID]) -> None:
    r = api.get(AUDIT)
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_trail_shows_a_change_made_through_the_api(api: ApiClient) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    api.post(
        f"/api/v1/users/{patient.id}/diseases",
        patient,
        json={"name": "Asthma"},
        headers={"X-Request-ID": "change-42"},
    )
    item, registration = _get(api, admin, f"?username={patient.username}").json["items"]
    assert registration["action"] == "user.create"
    assert item["action"] == "diseases.update"
    assert item["actor_id"] == str(patient.id)
    assert item["request_id"] == "change-42"
    assert "Asthma" not in str(item)


# Reading the trail is itself recorded (audit.read) ---------------------------------------


def test_a_read_of_the_trail_is_recorded_with_what_was_asked_for(
    api: ApiClient, engine: Engine, trail: list[uuid.UUID]
) -> None:
    admin = api.user(Role.ADMIN)
    start = "2026-03-01T12:01:00Z"
    r = api.get(
        f"{AUDIT}?username=alice&action=profile.update&from={start}&limit=2",
        admin,
        headers={"X-Request-ID": "audit-read-1"},
    )
    assert r.status_code == 200
    [event] = audit_events(engine, action="audit.read")
    assert (event["actor_id"], event["actor_username"], event["actor_role"]) == (
        admin.id,
        admin.username,
        "admin",
    )
    assert (event["subject_id"], event["subject_username"]) == (None, "alice")
    assert event["request_id"] == "audit-read-1"
    assert event["details"] == {
        "listed": 2,
        "filters": {"action": "profile.update", "from": "2026-03-01T12:01:00+00:00"},
    }


def test_a_read_of_the_whole_trail_names_no_subject_and_is_read_back(
    api: ApiClient, engine: Engine, trail: list[uuid.UUID]
) -> None:
    admin = api.user(Role.ADMIN)
    first = _get(api, admin, "?limit=3").json
    assert "audit.read" not in {item["action"] for item in first["items"]}  # not its own
    [event] = audit_events(engine, action="audit.read")
    assert (event["subject_id"], event["subject_username"]) == (None, None)
    assert event["details"] == {"listed": 3, "filters": {}}
    # The next admin to look sees who looked before.
    [seen] = _get(api, admin, "?action=audit.read").json["items"]
    assert (seen["id"], seen["actor_username"]) == (str(event["id"]), admin.username)
    # Even a page that shows nothing records that it was asked for.
    assert _get(api, admin, "?username=nobody").json["items"] == []
    nobody = audit_events(engine, action="audit.read", subject_username="nobody")
    assert [e["details"] for e in nobody] == [{"listed": 0, "filters": {}}]


def test_a_refused_read_of_the_trail_records_nothing(
    api: ApiClient, engine: Engine, trail: list[uuid.UUID]
) -> None:
    patient, operator, admin = api.user(), api.user(Role.OPERATOR), api.user(Role.ADMIN)
    demoted = api.user(Role.ADMIN)
    api.set_stored_role(demoted, Role.PATIENT)
    refused = [
        api.get(AUDIT),
        api.get(AUDIT, patient),
        api.get(AUDIT, operator),
        api.get(AUDIT, demoted),
        api.get(f"{AUDIT}?limit=0", admin),
        api.get(f"{AUDIT}?cursor=not-a-cursor", admin),
    ]
    assert [r.status_code for r in refused] == [401, 403, 403, 403, 422, 400]
    assert audit_events(engine, action="audit.read") == []
