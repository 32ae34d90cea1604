"""Each Core API answer that shows someone's health data records who saw whose, committed
before the answer is sent; an answer that shows nothing records nothing."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import Engine

from healthapp.domain.roles import Role
from tests import factories
from tests.factories import ApiClient, audit_events, checkup_item

_HEALTH_VALUES = ["O+", "1990-04-01", "Hypertension", "systolic", "nurse"]


def _get(api: ApiClient, path: str, as_: factories.TestUser, **params: Any) -> tuple[Any, str]:
    request_id = f"read-{uuid.uuid4().hex[:12]}"
    response = api.get(path, as_, headers={"X-Request-ID": request_id}, query_string=params or None)
    return response, request_id


def _reads(engine: Engine, request_id: str) -> list[dict[str, Any]]:
    events = audit_events(engine, request_id=request_id)
    dumped = orjson.dumps([event["details"] for event in events]).decode()
    for value in _HEALTH_VALUES:
        assert value not in dumped
    return events


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return sorted(
        (e["action"], e["actor_username"], e["subject_username"], e["details"]) for e in events
    )


def test_reading_a_profile_and_diseases_is_recorded(api: ApiClient, engine: Engine) -> None:
    patient, operator = api.user(), api.user(Role.OPERATOR)
    base = f"/api/v1/users/{patient.id}"
    api.post(f"{base}/profile", patient, json={"blood_group": "O+", "date_of_birth": "1990-04-01"})
    disease = api.post(f"{base}/diseases", patient, json={"name": "Hypertension"}).json["id"]

    profile, profile_id = _get(api, f"{base}/profile", patient)
    diseases, list_id = _get(api, f"{base}/diseases", operator)
    one, one_id = _get(api, f"{base}/diseases/{disease}", operator)

    assert (profile.status_code, diseases.status_code, one.status_code) == (200, 200, 200)
    [event] = _reads(engine, profile_id)
    assert event["actor_id"] == patient.id
    assert event["subject_id"] == patient.id
    assert _summary([event]) == [("profile.read", patient.username, patient.username, {})]
    assert _summary(_reads(engine, list_id)) == [
        ("diseases.read", operator.username, patient.username, {"listed": 1})
    ]
    assert _summary(_reads(engine, one_id)) == [
        ("diseases.read", operator.username, patient.username, {"disease_id": disease})
    ]


def test_a_checkup_list_records_each_user_on_the_page(api: ApiClient, engine: Engine) -> None:
    operator, alice, bob = api.user(Role.OPERATOR), api.user(), api.user()
    machine = api.machine()
    # A year no other test uses, so the staff page holds only these.
    year = 2004
    items = [
        checkup_item(alice.id, machine, taken_at=f"{year}-01-0{day}T08:00:00Z") for day in (1, 2)
    ] + [checkup_item(bob.id, machine, taken_at=f"{year}-01-03T08:00:00Z")]
    assert api.post("/api/v1/checkups/", operator, json={"checkups": items}).status_code == 201
    window = {"from": f"{year}-01-01T00:00:00Z", "to": f"{year + 1}-01-01T00:00:00Z"}

    staff, staff_id = _get(api, "/api/v1/checkups/", operator, **window)
    own, own_id = _get(api, "/api/v1/checkups/", alice, **window)
    one, one_id = _get(api, f"/api/v1/checkups/{items[2]['id']}", operator)

    assert (staff.status_code, own.status_code, one.status_code) == (200, 200, 200)
    assert len(staff.json["items"]) == 3
    assert _summary(_reads(engine, staff_id)) == [
        ("checkups.read", operator.username, alice.username, {"listed": 2}),
        ("checkups.read", operator.username, bob.username, {"listed": 1}),
    ]
    assert _summary(_reads(engine, own_id)) == [
        ("checkups.read", alice.username, alice.username, {"listed": 2})
    ]
    assert _summary(_reads(engine, one_id)) == [
        ("checkups.read", operator.username, bob.username, {"checkup_id": items[2]["id"]})
    ]


def test_an_empty_page_is_recorded_only_when_it_is_about_one_user(
    api: ApiClient, engine: Engine
) -> None:
    operator, patient = api.user(Role.OPERATOR), api.user()
    window = {"from": "2003-01-01T00:00:00Z", "to": "2003-02-01T00:00:00Z"}

    # "This patient has no check-ups that month" is about them; an empty staff page is not.
    one_user, one_user_id = _get(
        api, "/api/v1/checkups/", operator, user_id=str(patient.id), **window
    )
    everyone, everyone_id = _get(api, "/api/v1/checkups/", operator, **window)
    # Staff may ask for any id; a list for an id of no user is about nobody.
    nobody, nobody_id = _get(api, "/api/v1/checkups/", operator, user_id=str(uuid.uuid4()))

    assert (one_user.json["items"], everyone.json["items"], nobody.json["items"]) == ([], [], [])
    assert _summary(_reads(engine, one_user_id)) == [
        ("checkups.read", operator.username, patient.username, {"listed": 0})
    ]
    assert _reads(engine, everyone_id) == []
    assert _reads(engine, nobody_id) == []


def test_an_answer_that_shows_nothing_records_nothing(api: ApiClient, engine: Engine) -> None:
    patient, other = api.user(), api.user()
    machine = api.machine()
    item = checkup_item(other.id, machine)
    assert api.post("/api/v1/checkups/", other, json={"checkups": [item]}).status_code == 201

    answers = [
        _get(api, f"/api/v1/users/{other.id}/profile", patient),
        _get(api, f"/api/v1/users/{other.id}/diseases", patient),
        _get(api, f"/api/v1/checkups/{item['id']}", patient),
        _get(api, "/api/v1/checkups/", patient, user_id=str(other.id)),
        _get(api, f"/api/v1/users/{patient.id}/profile", patient),  # no profile yet
    ]

    assert [response.status_code for response, _ in answers] == [404] * 5
    for _, request_id in answers:
        assert _reads(engine, request_id) == []
