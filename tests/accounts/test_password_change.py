"""Changing a password (SPEC §14): your own needs ``current_password``; an admin sets
another user's without it. Wrong current passwords are counted per account."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app
from healthapp.domain.roles import Role
from healthapp.extensions import limiter
from tests.assertions import assert_problem, error_locs
from tests.factories import PASSWORD, ApiClient, TestUser, audit_events

USERS = "/api/v1/users/"
NEW_PASSWORD = "a-brand-new-passphrase"
WRONG = "not-my-password"


def _login(api: ApiClient, user: TestUser, password: str) -> int:
    body = {"username": user.username, "password": password}
    return api.post("/api/v1/auth/token", json=body).status_code


def _signed_in_again(api: ApiClient, user: TestUser, password: str) -> TestUser:
    body = {"username": user.username, "password": password}
    tokens = api.post("/api/v1/auth/token", json=body).json
    return replace(user, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])


def _change(api: ApiClient, user: TestUser, as_: TestUser, **body: Any) -> Any:
    return api.patch(f"{USERS}{user.id}", as_=as_, json=body)


@pytest.mark.parametrize("role", list(Role))
def test_own_password_change_without_current_password_is_a_422_naming_it(
    api: ApiClient, engine: Engine, role: Role
) -> None:
    user = api.user(role)
    problem = assert_problem(_change(api, user, user, password=NEW_PASSWORD), 422)
    assert error_locs(problem) == [["current_password"]]
    assert _login(api, user, PASSWORD) == 200
    assert _login(api, user, NEW_PASSWORD) == 401
    assert audit_events(engine, action="user.update") == []


@pytest.mark.parametrize("role", list(Role))
def test_own_password_change_with_a_wrong_current_password_is_a_403(
    api: ApiClient, engine: Engine, role: Role
) -> None:
    user = api.user(role)
    response = _change(
        api, user, user, password=NEW_PASSWORD, current_password=WRONG, email="x@example.com"
    )
    problem = assert_problem(response, 403)
    assert problem["detail"] == "The current password is wrong."
    assert problem["errors"] == [
        {"loc": ["current_password"], "msg": "The current password is wrong."}
    ]
    assert WRONG not in response.get_data(as_text=True)
    # Nothing changed, not even the email that came with it.
    assert api.get(f"{USERS}{user.id}", as_=user).json["email"] == f"{user.username}@example.com"
    assert _login(api, user, PASSWORD) == 200
    assert audit_events(engine, action="user.update") == []


def test_own_password_change_with_the_right_current_password(
    api: ApiClient, engine: Engine
) -> None:
    patient = api.user()
    response = _change(api, patient, patient, password=NEW_PASSWORD, current_password=PASSWORD)
    assert response.status_code == 200, response.json
    assert "password" not in response.json
    assert _login(api, patient, NEW_PASSWORD) == 200
    assert _login(api, patient, PASSWORD) == 401
    [event] = audit_events(engine, action="user.update")
    assert event["details"] == {"fields": ["password"]}  # never "current_password"
    assert event["actor_id"] == patient.id


def test_an_admin_changing_their_own_password_needs_theirs_too(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    assert_problem(_change(api, admin, admin, password=NEW_PASSWORD), 422)
    assert_problem(_change(api, admin, admin, password=NEW_PASSWORD, current_password=WRONG), 403)
    ok = _change(api, admin, admin, password=NEW_PASSWORD, current_password=PASSWORD)
    assert ok.status_code == 200
    assert _login(api, admin, NEW_PASSWORD) == 200


@pytest.mark.parametrize("role", list(Role))
def test_an_admin_sets_another_users_password_without_theirs(
    api: ApiClient, engine: Engine, role: Role
) -> None:
    admin, user = api.user(Role.ADMIN), api.user(role)
    response = _change(api, user, admin, password=NEW_PASSWORD)
    assert response.status_code == 200, response.json
    assert _login(api, user, NEW_PASSWORD) == 200
    assert _login(api, user, PASSWORD) == 401
    [event] = audit_events(engine, action="user.update")
    assert (event["actor_id"], event["subject_id"]) == (admin.id, user.id)
    assert event["details"] == {"fields": ["password"]}


def test_a_current_password_sent_by_an_admin_for_another_user_is_not_checked(
    api: ApiClient,
) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    response = _change(api, patient, admin, password=NEW_PASSWORD, current_password=WRONG)
    assert response.status_code == 200
    assert _login(api, patient, NEW_PASSWORD) == 200


@pytest.mark.parametrize("role", [Role.PATIENT, Role.OPERATOR])
def test_nobody_else_sets_another_users_password(api: ApiClient, role: Role) -> None:
    caller, patient = api.user(role), api.user()
    response = _change(api, patient, caller, password=NEW_PASSWORD, current_password=PASSWORD)
    assert_problem(response, 404 if role is Role.PATIENT else 403)
    assert _login(api, patient, PASSWORD) == 200


def test_changes_other_than_the_password_need_no_current_password(api: ApiClient) -> None:
    patient = api.user()
    response = _change(api, patient, patient, email="elsewhere@example.com")
    assert response.status_code == 200
    assert response.json["email"] == "elsewhere@example.com"


@pytest.mark.parametrize(
    "current", [None, "", "x" * 257], ids=["null", "empty", "longer than any password"]
)
def test_an_unusable_current_password_is_a_422_naming_it(api: ApiClient, current: Any) -> None:
    patient = api.user()
    response = _change(api, patient, patient, password=NEW_PASSWORD, current_password=current)
    assert error_locs(assert_problem(response, 422)) == [["current_password"]]


def test_openapi_documents_current_password(app: Any) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    operation = document["paths"]["/api/v1/users/{user_id}"]["patch"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    field = schema["properties"]["current_password"]
    assert field["type"] == "string"
    assert "own" in field["description"]
    assert {"403", "422", "429"} <= set(operation["responses"])
    assert "current_password" in operation["responses"]["403"]["description"]


# Wrong current passwords are counted per account ------------------------------------------


@pytest.fixture
def limited_api(app: Any, database_url: str, engine: Engine, redis_url: str) -> Iterator[ApiClient]:
    """A Core API allowing 2 wrong current passwords a minute per account, counted in Redis."""
    settings = config.Testing()
    settings.DATABASE_URL = database_url
    settings.REDIS_URL = redis_url
    settings.RATELIMIT_ENABLED = True
    settings.CURRENT_PASSWORD_RATE_LIMIT_PER_USER = "2/minute"
    limited = create_app(settings, engine=engine)
    yield ApiClient(limited, limited.test_client())
    # Flask-Limiter keeps its storage and switch on the one extension object: give it back.
    limiter.init_app(app)


def test_wrong_current_passwords_are_limited_per_account(limited_api: ApiClient) -> None:
    api = limited_api
    patient, other, admin = api.user(), api.user(), api.user(Role.ADMIN)
    for _ in range(2):
        response = _change(api, patient, patient, password=NEW_PASSWORD, current_password=WRONG)
        assert_problem(response, 403)
    # The third guess is not even checked, and neither is the right password now.
    for current in (WRONG, PASSWORD):
        response = _change(api, patient, patient, password=NEW_PASSWORD, current_password=current)
        assert_problem(response, 429)
        assert int(response.headers["Retry-After"]) > 0
    assert _login(api, patient, PASSWORD) == 200
    # Another account's owner, and an admin changing this one, are not held up.
    ok = _change(api, other, other, password=NEW_PASSWORD, current_password=PASSWORD)
    assert ok.status_code == 200
    assert _change(api, patient, admin, email="reset@example.com").status_code == 200


def test_right_current_passwords_and_other_refusals_are_not_counted(
    limited_api: ApiClient,
) -> None:
    api = limited_api
    patient = api.user()
    passwords = [PASSWORD, *(f"passphrase-number-{n}" for n in range(4))]
    for current, new in itertools.pairwise(passwords):
        response = _change(api, patient, patient, password=new, current_password=current)
        assert response.status_code == 200, response.json
        patient = _signed_in_again(api, patient, new)  # the change ended every session
    for _ in range(3):  # a missing current password is invalid input, not a guess
        assert_problem(_change(api, patient, patient, password=NEW_PASSWORD), 422)
        assert_problem(_change(api, patient, patient, role="admin"), 403)
    email = f"{uuid.uuid4().hex}@example.com"
    assert _change(api, patient, patient, email=email).status_code == 200
