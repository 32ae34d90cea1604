"""Privileged changes believe PostgreSQL, not only the token (SPEC §14).

An admin's token keeps claiming ``admin`` after the account was demoted or deleted, until
it expires or is revoked. The accounts here are changed in PostgreSQL alone
(``ApiClient.set_stored_role`` / ``delete_stored_user``), so the tokens are exactly as
good as before: what refuses them is the check of the stored role, and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from healthapp.auth.privileged import ROLE_LOOKUP_EXTENSION
from healthapp.domain.roles import Role
from tests.assertions import assert_problem
from tests.factories import ApiClient, TestUser, checkup_item

USERS = "/api/v1/users/"
MACHINES = "/api/v1/machines/"


def _stored_role(engine: Engine, user_id: uuid.UUID) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT role FROM users WHERE id = :id"), {"id": user_id}
        ).scalar_one_or_none()


def _registration(username: str, role: str = "admin") -> dict[str, str]:
    return {
        "username": username,
        "email": f"{username}@example.com",
        "password": "0123456789ab",
        "role": role,
    }


@pytest.fixture
def world(api: ApiClient) -> dict[str, Any]:
    """A patient with a check-up, and a machine: what a stale admin token goes after."""
    patient, machine = api.user(), api.machine()
    item = checkup_item(patient.id, machine)
    assert api.post("/api/v1/checkups/", patient, json={"checkups": [item]}).status_code == 201
    return {"patient": patient, "machine": machine, "checkup": item["id"]}


#: Each privileged change a stale admin token tries: (name, method, path, body).
Attempt = tuple[str, str, str, dict[str, Any] | None]


def _attempts(caller: TestUser, world: dict[str, Any]) -> list[Attempt]:
    patient, machine = world["patient"], world["machine"]
    return [
        ("restore its own role", "PATCH", f"{USERS}{caller.id}", {"role": "admin"}),
        ("register an admin", "POST", USERS, _registration(f"new-{uuid.uuid4().hex[:8]}")),
        (
            "register an operator",
            "POST",
            USERS,
            _registration(f"op-{uuid.uuid4().hex[:8]}", "operator"),
        ),
        ("promote someone", "PATCH", f"{USERS}{patient.id}", {"role": "admin"}),
        ("set someone's password", "PATCH", f"{USERS}{patient.id}", {"password": "0123456789ab"}),
        ("change someone's email", "PATCH", f"{USERS}{patient.id}", {"email": "x@example.com"}),
        ("change someone's profile", "POST", f"{USERS}{patient.id}/profile", {"sex": "male"}),
        (
            "register a machine",
            "POST",
            MACHINES,
            {"machine_type": "ecg", "serial_number": f"SN-{uuid.uuid4().hex[:8]}"},
        ),
        ("change a machine", "PATCH", f"{MACHINES}{machine}", {"active": False}),
        ("delete a check-up", "DELETE", f"/api/v1/checkups/{world['checkup']}", None),
        ("delete a machine", "DELETE", f"{MACHINES}{machine}", None),  # no check-up left
        ("read the audit trail", "GET", "/api/v1/audit/", None),
        ("delete someone", "DELETE", f"{USERS}{patient.id}", None),
    ]


def _try_all(api: ApiClient, caller: TestUser, world: dict[str, Any]) -> dict[str, Any]:
    answers = {}
    for name, method, path, body in _attempts(caller, world):
        kwargs = {"json": body} if body is not None else {}
        answers[name] = api.call(method, path, caller, **kwargs)
    return answers


def _assert_nothing_changed(api: ApiClient, engine: Engine, world: dict[str, Any]) -> None:
    patient = world["patient"]
    assert _stored_role(engine, patient.id) == "patient"
    with engine.connect() as conn:
        staff = conn.execute(text("SELECT count(*) FROM users WHERE username LIKE 'new-%'"))
        assert staff.scalar_one() == 0
        operators = conn.execute(text("SELECT count(*) FROM users WHERE username LIKE 'op-%'"))
        assert operators.scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM machines")).scalar_one() == 1
        assert conn.execute(text("SELECT bool_and(active) FROM machines")).scalar_one()
        assert conn.execute(text("SELECT count(*) FROM checkups")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM profiles")).scalar_one() == 0
        email = conn.execute(text("SELECT email FROM users WHERE id = :id"), {"id": patient.id})
        assert email.scalar_one() == f"{patient.username}@example.com"


@pytest.mark.parametrize("now", [Role.PATIENT, Role.OPERATOR])
def test_a_demoted_admins_token_is_refused_every_privileged_change(
    api: ApiClient, engine: Engine, world: dict[str, Any], now: Role
) -> None:
    demoted = api.user(Role.ADMIN)
    api.set_stored_role(demoted, now)
    for name, response in _try_all(api, demoted, world).items():
        problem = assert_problem(response, 403, name)
        assert problem["detail"] == "Your account's current role may not do this.", name
    assert _stored_role(engine, demoted.id) == now.value
    _assert_nothing_changed(api, engine, world)


def test_a_deleted_admins_token_is_a_401_on_every_privileged_change(
    api: ApiClient, engine: Engine, world: dict[str, Any]
) -> None:
    deleted = api.user(Role.ADMIN)
    api.delete_stored_user(deleted)
    for name, response in _try_all(api, deleted, world).items():
        problem = assert_problem(response, 401, name)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert problem["detail"] == "The account of this token no longer exists.", name
    assert _stored_role(engine, deleted.id) is None
    _assert_nothing_changed(api, engine, world)


def test_an_admins_token_still_does_all_of_it(
    api: ApiClient, engine: Engine, world: dict[str, Any]
) -> None:
    admin = api.user(Role.ADMIN)
    answers = _try_all(api, admin, world)
    for name, response in answers.items():
        assert response.status_code in (200, 201, 204), (name, response.json)
    assert _stored_role(engine, admin.id) == "admin"


def test_a_demoted_admin_still_manages_their_own_account(api: ApiClient) -> None:
    demoted = api.user(Role.ADMIN)
    api.set_stored_role(demoted, Role.PATIENT)
    own = f"{USERS}{demoted.id}"
    assert api.patch(own, demoted, json={"email": "mine@example.com"}).status_code == 200
    assert api.post(f"{own}/diseases", demoted, json={"name": "Flu"}).status_code == 201
    assert api.get(MACHINES, demoted).status_code == 200


def test_the_issues_case_through_the_api(api: ApiClient, engine: Engine) -> None:
    """An admin demoted by another admin over HTTP tries to restore itself with its old
    token and to register a new admin: refused (403 from the stored role; 401 where the
    demotion has also revoked the token), and neither happened."""
    admin, demoted = api.user(Role.ADMIN), api.user(Role.ADMIN)
    response = api.patch(f"{USERS}{demoted.id}", admin, json={"role": "patient"})
    assert response.status_code == 200
    restore = api.patch(f"{USERS}{demoted.id}", demoted, json={"role": "admin"})
    assert restore.status_code in (401, 403), restore.json
    register = api.post(USERS, demoted, json=_registration("sleeper-admin"))
    assert register.status_code in (401, 403), register.json
    assert _stored_role(engine, demoted.id) == "patient"
    with engine.connect() as conn:
        taken = conn.execute(text("SELECT count(*) FROM users WHERE username = 'sleeper-admin'"))
        assert taken.scalar_one() == 0


def test_a_patient_token_naming_someone_else_is_still_answered_404(api: ApiClient) -> None:
    # The stored role is asked for only once the token's own claim would admit the change:
    # a patient's attempt stays the 404 that does not tell whether the user exists.
    patient, other = api.user(), api.user()
    for method, path in (
        ("PATCH", f"{USERS}{other.id}"),
        ("DELETE", f"{USERS}{other.id}"),
        ("PATCH", f"{USERS}{uuid.uuid4()}"),
    ):
        assert_problem(api.call(method, path, patient, json={"role": "admin"}), 404)


def test_registration_without_a_token_still_refuses_staff_with_a_403(api: ApiClient) -> None:
    assert_problem(api.post(USERS, json=_registration("anon-admin")), 403)
    assert api.post(USERS, json=_registration("anon-patient", "patient")).status_code == 201


# What it costs: one query for a privileged change, none for anything else ------------------


@pytest.fixture
def role_lookups(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """The user ids the app asks PostgreSQL the role of, in order (the real lookup runs)."""
    asked: list[uuid.UUID] = []
    lookup: Callable[[uuid.UUID], Role | None] = app.extensions[ROLE_LOOKUP_EXTENSION]

    def counting(user_id: uuid.UUID) -> Role | None:
        asked.append(user_id)
        return lookup(user_id)

    monkeypatch.setitem(app.extensions, ROLE_LOOKUP_EXTENSION, counting)
    return asked


def test_ordinary_requests_do_not_ask_for_the_stored_role(
    api: ApiClient, world: dict[str, Any], role_lookups: list[uuid.UUID]
) -> None:
    patient, operator, admin = world["patient"], api.user(Role.OPERATOR), api.user(Role.ADMIN)
    own = f"{USERS}{patient.id}"
    ordinary = [
        api.get(own, patient),
        api.patch(own, patient, json={"email": "own@example.com"}),
        api.post(f"{own}/diseases", patient, json={"name": "Flu"}),
        api.get(f"{own}/diseases", patient),
        api.get(MACHINES, patient),
        api.get(USERS, operator),
        api.get(own, admin),
        api.patch(f"{USERS}{admin.id}", admin, json={"email": "admin@example.com"}),
        api.post(USERS, json=_registration("walk-in", "patient")),
        api.post(
            "/api/v1/checkups/",
            operator,
            json={"checkups": [checkup_item(patient.id, world["machine"])]},
        ),
    ]
    assert [r.status_code for r in ordinary] == [200, 200, 201, 200, 200, 200, 200, 200, 201, 201]
    assert role_lookups == []


def test_a_privileged_change_asks_once(
    api: ApiClient, world: dict[str, Any], role_lookups: list[uuid.UUID]
) -> None:
    admin = api.user(Role.ADMIN)
    assert api.get("/api/v1/audit/", admin).status_code == 200
    promoted = api.patch(f"{USERS}{world['patient'].id}", admin, json={"role": "operator"})
    assert promoted.status_code == 200
    assert api.post(USERS, admin, json=_registration("second-admin")).status_code == 201
    assert role_lookups == [admin.id] * 3
