"""The Reports API over real Redis, fed by the sync from real PostgreSQL (SPEC §7)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from healthapp.domain.roles import Role
from tests.factories import checkup_session, insert_checkups


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}"}


def test_upload_sync_read_end_to_end(api, sync, reports):
    operator = api.user(Role.OPERATOR)
    patient = api.user()
    machine = api.machine("blood_pressure", manufacturer="Cuff Co")
    items = checkup_session(patient.id, machine, 30)
    r = api.post("/api/v1/checkups/", operator, json={"checkups": items})
    assert r.status_code == 201, r.json
    api.post(f"/api/v1/users/{patient.id}/profile", patient, json={"sex": "female"})

    sync()
    r = reports.get(f"/api/v1/users/{patient.username}/", headers=bearer(patient))

    assert r.status_code == 200, r.json
    body = r.json
    assert list(body) == [
        "username",
        "profile",
        "diseases",
        "checkups",
        "next_cursor",
        "summary",
        "synced_at",
    ]
    assert body["username"] == patient.username
    assert body["profile"]["sex"] == "female"
    assert len(body["checkups"]) == 30
    assert body["next_cursor"] is None
    newest = max(items, key=lambda item: item["taken_at"])
    first = body["checkups"][0]
    assert first["id"] == newest["id"]
    assert first["checkup"] == newest["information"]
    assert first["taken_at"] == newest["taken_at"]
    assert first["machine"] == {
        "id": str(machine),
        "machine_type": "blood_pressure",
        "manufacturer": "Cuff Co",
    }
    assert set(first) == {
        "id",
        "checkup_type",
        "checkup",
        "machine",
        "test_taken_by",
        "taken_at",
        "created_at",
    }
    assert first["created_at"].endswith("Z")
    assert body["summary"]["blood_pressure"] == {"count": 4, "latest": 122, "min": 122, "max": 122}
    assert sum(s["count"] for s in body["summary"].values()) == 30
    assert body["synced_at"].endswith("Z")
    assert r.headers["ETag"]
    assert r.headers["Last-Modified"]
    assert r.headers["Cache-Control"].startswith("private")

    # Deleting a check-up through the Core API reaches the report at the next sync.
    admin = api.user(Role.ADMIN)
    assert api.delete(f"/api/v1/checkups/{newest['id']}", admin).status_code == 204
    sync()
    r = reports.get(f"/api/v1/users/{patient.username}/", headers=bearer(patient))
    assert newest["id"] not in {c["id"] for c in r.json["checkups"]}
    assert len(r.json["checkups"]) == 29


def test_conditional_get_answers_304_until_the_report_changes(api, engine, sync, reports):
    patient = api.user()
    machine = api.machine()
    insert_checkups(engine, user_id=patient.id, machine_id=machine, count=5)
    sync()
    path = f"/api/v1/users/{patient.username}/?limit=3"
    first = reports.get(path, headers=bearer(patient))
    etag = first.headers["ETag"]

    again = reports.get(path, headers={**bearer(patient), "If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    other_query = reports.get(
        f"/api/v1/users/{patient.username}/?limit=4",
        headers={**bearer(patient), "If-None-Match": etag},
    )
    assert other_query.status_code == 200

    insert_checkups(engine, user_id=patient.id, machine_id=machine, count=1)
    sync()
    changed = reports.get(path, headers={**bearer(patient), "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_filters_and_pagination(api, sync, reports):
    operator = api.user(Role.OPERATOR)
    patient = api.user()
    machine = api.machine()
    items = checkup_session(patient.id, machine, 96)  # 12 of each of 8 types
    assert api.post("/api/v1/checkups/", operator, json={"checkups": items}).status_code == 201
    sync()
    base = f"/api/v1/users/{patient.username}/"

    seen: list[str] = []
    url = f"{base}?checkup_type=heart_rate&limit=5"
    while url:
        r = reports.get(url, headers=bearer(operator))
        assert r.status_code == 200, r.json
        assert {c["checkup_type"] for c in r.json["checkups"]} <= {"heart_rate"}
        seen += [c["id"] for c in r.json["checkups"]]
        cursor = r.json["next_cursor"]
        url = f"{base}?checkup_type=heart_rate&limit=5&cursor={cursor}" if cursor else ""
    expected = sorted(
        (i for i in items if i["checkup_type"] == "heart_rate"),
        key=lambda i: (i["taken_at"], i["id"]),
        reverse=True,
    )
    assert seen == [i["id"] for i in expected]

    times = sorted(i["taken_at"] for i in items)
    start, end = times[10], times[20]
    r = reports.get(f"{base}?from={start}&to={end}", headers=bearer(operator))
    got = [c["taken_at"] for c in r.json["checkups"]]
    assert got == sorted((t for t in times if start <= t < end), reverse=True)

    assert reports.get(f"{base}?cursor=garbage", headers=bearer(operator)).status_code == 400
    bad = reports.get(f"{base}?checkup_type=nope&limit=0", headers=bearer(operator))
    assert bad.status_code == 422
    assert bad.content_type == "application/problem+json"
    assert {tuple(e["loc"]) for e in bad.json["errors"]} == {
        ("query", "checkup_type"),
        ("query", "limit"),
    }


def test_roles(api, engine, sync, reports):
    alice, bob = api.user(), api.user()
    operator, admin = api.user(Role.OPERATOR), api.user(Role.ADMIN)
    machine = api.machine()
    insert_checkups(engine, user_id=alice.id, machine_id=machine, count=2)
    sync()
    path = f"/api/v1/users/{alice.username}/"

    assert reports.get(path).status_code == 401
    assert reports.get(path, headers={"Authorization": "Bearer forged"}).status_code == 401
    assert reports.get(path, headers=bearer(alice)).status_code == 200
    assert reports.get(path, headers=bearer(operator)).status_code == 200
    assert reports.get(path, headers=bearer(admin)).status_code == 200
    hidden = reports.get(path, headers=bearer(bob))
    assert hidden.status_code == 404
    assert hidden.content_type == "application/problem+json"
    assert reports.get("/api/v1/users/nobody-here/", headers=bearer(admin)).status_code == 404
    assert reports.get("/api/v1/users/", headers=bearer(alice)).status_code == 403
    assert reports.get("/api/v1/users/", headers=bearer(operator)).status_code == 200


def test_all_users_paginated_by_username(api, engine, sync, reports):
    operator = api.user(Role.OPERATOR, username="aaa-operator")
    machine = api.machine()
    patients = [api.user(username=f"patient-{n:02d}") for n in range(5)]
    for n, patient in enumerate(patients):
        insert_checkups(engine, user_id=patient.id, machine_id=machine, count=3 + n)
    sync()

    names: list[str] = []
    url = "/api/v1/users/?limit=2&checkups_per_user=4"
    while url:
        r = reports.get(url, headers=bearer(operator))
        assert r.status_code == 200, r.json
        for name, user in r.json["users"].items():
            assert set(user) == {"checkups", "checkup_count"}
            assert len(user["checkups"]) == min(4, user["checkup_count"])
            for checkup in user["checkups"]:
                assert set(checkup) == {"checkup", "checkup_type", "created_at"}
            names.append(name)
        cursor = r.json["next_cursor"]
        url = f"/api/v1/users/?limit=2&checkups_per_user=4&cursor={cursor}" if cursor else ""
    assert names == sorted(["aaa-operator", *(p.username for p in patients)])
    r = reports.get("/api/v1/users/?checkups_per_user=1001", headers=bearer(operator))
    assert r.status_code == 422


def test_docs_and_health(reports):
    spec = reports.get("/openapi.json").json
    assert "/api/v1/users/{username}/" in spec["paths"]
    assert "/api/v1/users/" in spec["paths"]
    assert reports.get("/docs").status_code == 200
    assert reports.get("/healthz").json == {"status": "ok"}
    assert reports.get("/readyz").json["checks"] == {"redis": "ok"}


def test_sync_metrics_exposed(api, engine, sync, scrape):
    insert_checkups(engine, user_id=api.user().id, machine_id=api.machine(), count=1)
    sync()
    text = scrape("/metrics/sync")
    assert "healthapp_sync_documents_written_total" in text
    assert "healthapp_sync_last_lag_seconds" in text


@pytest.mark.parametrize("module", ["healthapp.reports.app"])
def test_read_side_imports_no_table_and_no_driver(module):
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in sys.modules if m.endswith('.models') or m == 'psycopg'); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
