"""Each change of health data records one audit event, in the changing transaction."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from healthapp.audit import service as audit
from healthapp.domain.roles import Role
from healthapp.request_context import SYSTEM
from tests import factories
from tests.factories import ApiClient, audit_events, checkup_item, checkup_session

_HEALTH_VALUES = ["O+", "1990-04-01", "Hypertension", "daily tablets", "122", "systolic"]


def _request_id() -> str:
    return f"req-{uuid.uuid4().hex[:12]}"


def _call(
    api: ApiClient, method: str, path: str, as_: factories.TestUser, **kw: Any
) -> tuple[Any, str]:
    request_id = _request_id()
    response = api.call(method, path, as_, headers={"X-Request-ID": request_id}, **kw)
    return response, request_id


def _only_event(engine: Engine, **where: Any) -> dict[str, Any]:
    events = audit_events(engine, **where)
    assert len(events) == 1, events
    return events[0]


def _assert_no_health_values(events: list[dict[str, Any]]) -> None:
    dumped = orjson.dumps([event["details"] for event in events]).decode()
    for value in _HEALTH_VALUES:
        assert value not in dumped


def _assert_actor(event: dict[str, Any], actor: factories.TestUser, request_id: str) -> None:
    assert event["actor_id"] == actor.id
    assert event["actor_username"] == actor.username
    assert event["actor_role"] == actor.role.value
    assert event["request_id"] == request_id


def test_profile_changes_are_recorded_with_actor_subject_and_request(
    api: ApiClient, engine: Engine
) -> None:
    patient = api.user()
    base = f"/api/v1/users/{patient.id}/profile"
    body = {"blood_group": "O+", "date_of_birth": "1990-04-01"}

    created, create_id = _call(api, "POST", base, patient, json=body)
    updated, update_id = _call(api, "PATCH", base, patient, json={"blood_group": None})
    deleted, delete_id = _call(api, "DELETE", base, patient)

    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
    events = audit_events(engine, action="profile.update")
    assert [e["details"] for e in events] == [
        {"change": "create", "fields": ["blood_group", "date_of_birth"]},
        {"change": "update", "fields": ["blood_group"]},
        {"change": "delete"},
    ]
    for event, request_id in zip(events, [create_id, update_id, delete_id], strict=True):
        _assert_actor(event, patient, request_id)
        assert (event["subject_id"], event["subject_username"]) == (patient.id, patient.username)
    _assert_no_health_values(events)


def test_disease_changes_are_recorded(api: ApiClient, engine: Engine) -> None:
    patient, admin = api.user(), api.user(Role.ADMIN)
    base = f"/api/v1/users/{patient.id}/diseases"
    created, create_id = _call(
        api, "POST", base, patient, json={"name": "Hypertension", "details": "daily tablets"}
    )
    disease_id = created.json["id"]
    updated, update_id = _call(
        api, "PATCH", f"{base}/{disease_id}", admin, json={"diagnosed_on": "2024-02-10"}
    )
    deleted, delete_id = _call(api, "DELETE", f"{base}/{disease_id}", admin)

    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
    events = audit_events(engine, action="diseases.update")
    assert [e["details"] for e in events] == [
        {"change": "create", "disease_id": disease_id},
        {"change": "update", "disease_id": disease_id, "fields": ["diagnosed_on"]},
        {"change": "delete", "disease_id": disease_id},
    ]
    _assert_actor(events[0], patient, create_id)
    _assert_actor(events[1], admin, update_id)
    _assert_actor(events[2], admin, delete_id)
    assert {e["subject_username"] for e in events} == {patient.username}
    _assert_no_health_values(events)


def _registration(username: str, **fields: Any) -> dict[str, Any]:
    body = {"username": username, "email": f"{username}@example.com", "password": "0123456789ab"}
    return {**body, **fields}


def test_open_registration_is_recorded_as_made_by_the_anonymous_caller(
    api: ApiClient, engine: Engine
) -> None:
    request_id = _request_id()
    response = api.post(
        "/api/v1/users/", json=_registration("walk-in"), headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 201
    event = _only_event(engine, action="user.create")
    assert (event["subject_id"], event["subject_username"]) == (
        uuid.UUID(response.json["id"]),
        "walk-in",
    )
    assert (event["actor_id"], event["actor_username"], event["actor_role"]) == (
        None,
        "anonymous",
        "anonymous",
    )
    assert event["request_id"] == request_id
    assert event["details"] == {"role": "patient"}
    assert "0123456789ab" not in orjson.dumps(event, default=str).decode()


@pytest.mark.parametrize("role", ["patient", "operator", "admin"])
def test_a_user_an_admin_registers_is_recorded_with_the_admin(
    api: ApiClient, engine: Engine, role: str
) -> None:
    admin = api.user(Role.ADMIN)
    response, request_id = _call(
        api, "POST", "/api/v1/users/", admin, json=_registration("made-by-admin", role=role)
    )
    assert response.status_code == 201
    [event] = [e for e in audit_events(engine, action="user.create") if e["request_id"]]
    _assert_actor(event, admin, request_id)
    assert event["subject_username"] == "made-by-admin"
    assert event["details"] == {"role": role}


def test_a_user_is_recorded_in_the_transaction_that_creates_it(
    api: ApiClient, engine: Engine
) -> None:
    response = api.post("/api/v1/users/", json=_registration("same-transaction"))
    with engine.connect() as conn:
        # xmin: the transaction that inserted the row.
        user_xmin = conn.execute(
            text("SELECT xmin::text FROM users WHERE id = :id"), {"id": response.json["id"]}
        ).scalar_one()
        event_xmin = conn.execute(
            text("SELECT xmin::text FROM audit_events WHERE subject_id = :id"),
            {"id": response.json["id"]},
        ).scalar_one()
    assert user_xmin == event_xmin


def test_a_refused_registration_records_nothing(api: ApiClient, engine: Engine) -> None:
    api.post("/api/v1/users/", json=_registration("taken"))
    patient = api.user()
    before = audit_events(engine)
    refused = [
        api.post("/api/v1/users/", json=_registration("taken")),  # 409
        api.post("/api/v1/users/", json=_registration("staff", role="admin")),  # 403
        api.post("/api/v1/users/", patient, json=_registration("staff", role="admin")),  # 403
        api.post("/api/v1/users/", json=_registration("x")),  # 422
    ]
    assert [r.status_code for r in refused] == [409, 403, 403, 422]
    assert audit_events(engine) == before


def test_outside_a_request_the_system_creates_users(api: ApiClient, engine: Engine) -> None:
    patient = api.user()  # through the service in an app context, as the command line does
    event = _only_event(engine, action="user.create", subject_id=patient.id)
    assert (event["actor_id"], event["actor_username"], event["request_id"]) == (
        None,
        "system",
        None,
    )


def test_user_deletion_is_recorded_and_the_event_survives_it(
    api: ApiClient, engine: Engine
) -> None:
    patient, admin = api.user(), api.user(Role.ADMIN)
    api.post(f"/api/v1/users/{patient.id}/profile", patient, json={"sex": "female"})

    response, request_id = _call(api, "DELETE", f"/api/v1/users/{patient.id}", admin)

    assert response.status_code == 204
    event = _only_event(engine, action="user.delete")
    _assert_actor(event, admin, request_id)
    assert (event["subject_id"], event["subject_username"]) == (patient.id, patient.username)
    # The registration's and the profile's events are kept too, though the user is gone, and
    # so is the revocation of the user's tokens.
    kept = audit_events(engine, subject_id=patient.id)
    assert [e["action"] for e in kept] == [
        "user.create",
        "profile.update",
        "user.delete",
        "auth.revoked",
    ]
    revoked = _only_event(engine, action="auth.revoked")
    assert revoked["details"] == {"reason": "user_deleted", "sessions": 1}


def test_user_update_names_the_fields_but_never_their_values(
    api: ApiClient, engine: Engine
) -> None:
    patient, admin = api.user(), api.user(Role.ADMIN)
    secret = "a-brand-new-passphrase"
    response, request_id = _call(
        api,
        "PATCH",
        f"/api/v1/users/{patient.id}",
        admin,
        json={"password": secret, "role": "operator", "email": "new-address@example.com"},
    )

    assert response.status_code == 200, response.json
    event = _only_event(engine, action="user.update")
    _assert_actor(event, admin, request_id)
    assert event["details"] == {"fields": ["email", "password", "role"]}
    dumped = orjson.dumps(event, default=str).decode()
    assert secret not in dumped
    assert "new-address" not in dumped


def test_a_refused_change_records_nothing(api: ApiClient, engine: Engine) -> None:
    patient, other = api.user(), api.user()
    before = audit_events(engine)
    taken = f"{other.username}@example.com"
    response = api.patch(f"/api/v1/users/{patient.id}", patient, json={"email": taken})
    assert response.status_code == 409
    response = api.post(f"/api/v1/users/{patient.id}/diseases", patient, json={"name": ""})
    assert response.status_code == 422
    assert audit_events(engine) == before


def test_an_upload_records_one_event_per_user_with_counts(api: ApiClient, engine: Engine) -> None:
    operator = api.user(Role.OPERATOR)
    alice, bob = api.user(), api.user()
    machine = api.machine()
    items = [*checkup_session(alice.id, machine, 3), *checkup_session(bob.id, machine, 2)]

    first, first_id = _call(api, "POST", "/api/v1/checkups/", operator, json={"checkups": items})
    assert first.status_code == 201
    events = audit_events(engine, action="checkups.upload")
    upload = {"items": 5, "created": 5, "duplicates": 0, "rejected": 0}
    by_user = {e["subject_username"]: e for e in events}
    assert set(by_user) == {alice.username, bob.username}
    assert by_user[alice.username]["details"] == {"created": 3, "duplicates": 0, "upload": upload}
    assert by_user[bob.username]["details"] == {"created": 2, "duplicates": 0, "upload": upload}
    assert by_user[alice.username]["subject_id"] == alice.id
    for event in events:
        _assert_actor(event, operator, first_id)
    _assert_no_health_values(events)

    # A retry with one new item for alice: only alice got a change.
    extra = checkup_item(alice.id, machine, taken_at="2026-02-01T08:00:00Z")
    retry, retry_id = _call(
        api, "POST", "/api/v1/checkups/", operator, json={"checkups": [*items, extra]}
    )
    assert retry.json == {"created": 1, "duplicates": 5}
    [event] = [
        e for e in audit_events(engine, action="checkups.upload") if e["request_id"] == retry_id
    ]
    assert event["subject_username"] == alice.username
    assert event["details"] == {
        "created": 1,
        "duplicates": 3,
        "upload": {"items": 6, "created": 1, "duplicates": 5, "rejected": 0},
    }


def test_a_batch_upload_counts_the_rejected_items(api: ApiClient, engine: Engine) -> None:
    operator, patient = api.user(Role.OPERATOR), api.user()
    machine = api.machine()
    good = checkup_session(patient.id, machine, 2)
    stored = checkup_item(patient.id, machine)
    api.post("/api/v1/checkups/", operator, json={"checkups": [stored]})
    conflicting = {**stored, "test_taken_by": "someone else"}
    unknown_user = checkup_item(uuid.uuid4(), machine)
    invalid = checkup_item(patient.id, machine, information={"systolic": "high"})

    response, request_id = _call(
        api,
        "POST",
        "/api/v1/checkups/?mode=batch",
        operator,
        json={"checkups": [*good, conflicting, unknown_user, invalid]},
    )

    assert response.status_code == 201
    assert response.json["rejected"] == 3
    [event] = [e for e in audit_events(engine) if e["request_id"] == request_id]
    assert event["details"] == {
        "created": 2,
        "duplicates": 0,
        "upload": {"items": 5, "created": 2, "duplicates": 0, "rejected": 3},
    }


def test_an_upload_refused_as_a_whole_records_nothing(api: ApiClient, engine: Engine) -> None:
    patient, machine = api.user(), api.machine()
    items = [checkup_item(patient.id, machine), checkup_item(uuid.uuid4(), machine)]
    response = api.post("/api/v1/checkups/", patient, json={"checkups": items})
    assert response.status_code == 422
    duplicate_only = api.post("/api/v1/checkups/", patient, json={"checkups": items[:1]})
    assert duplicate_only.status_code == 201
    again = api.post("/api/v1/checkups/", patient, json={"checkups": items[:1]})
    assert again.json == {"created": 0, "duplicates": 1}
    # One event: the upload that stored something. Neither the 422 nor the pure retry.
    assert len(audit_events(engine, action="checkups.upload")) == 1


def test_a_checkup_deletion_is_recorded(api: ApiClient, engine: Engine) -> None:
    admin, patient, machine = api.user(Role.ADMIN), api.user(), api.machine()
    item = checkup_item(patient.id, machine)
    api.post("/api/v1/checkups/", patient, json={"checkups": [item]})

    response, request_id = _call(api, "DELETE", f"/api/v1/checkups/{item['id']}", admin)

    assert response.status_code == 204
    event = _only_event(engine, action="checkup.delete")
    _assert_actor(event, admin, request_id)
    assert (event["subject_id"], event["subject_username"]) == (patient.id, patient.username)
    assert event["details"] == {"checkup_id": item["id"]}


def test_the_event_rolls_back_with_the_change(api: ApiClient, engine: Engine, db_session) -> None:
    patient = api.user()
    before = audit_events(engine)
    audit.record(
        session=db_session,
        action="profile.update",
        subjects=[audit.Subject(patient.id, patient.username, {"change": "update"})],
        actor=SYSTEM,
    )
    db_session.rollback()
    assert audit_events(engine) == before


def test_outside_a_request_the_system_is_the_actor(
    api: ApiClient, engine: Engine, db_session
) -> None:
    patient = api.user()
    audit.record(
        session=db_session,
        action="profile.update",
        subjects=[audit.Subject(patient.id, patient.username)],
    )
    db_session.commit()
    event = _only_event(engine, action="profile.update")
    assert (event["actor_id"], event["actor_username"], event["actor_role"]) == (
        None,
        "system",
        "system",
    )
    assert event["request_id"] is None
    assert event["occurred_at"].tzinfo is not None


def test_details_take_only_counts_ids_and_names(db_session) -> None:
    with pytest.raises(ValueError, match="information"):
        audit.record(
            session=db_session,
            action="checkups.upload",
            subjects=[audit.Subject(None, None, {"information": {"systolic": 122}})],
        )
    with db_session.connection() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 0
