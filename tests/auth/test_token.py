"""Logging in and refreshing tokens (SPEC §4)."""

from __future__ import annotations

from typing import Any

import pytest

from healthapp.domain.roles import Role
from tests.assertions import assert_problem, error_locs
from tests.factories import PASSWORD, ApiClient, claims_of, sign

TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"


def _login(api: ApiClient, username: str, password: str = PASSWORD) -> Any:
    return api.post(TOKEN, json={"username": username, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _claims(_app: Any, token: str) -> dict[str, Any]:
    return claims_of(token)


# Logging in ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_login_returns_tokens_carrying_id_username_and_role(
    app: Any, api: ApiClient, role: Role
) -> None:
    user = api.user(role)
    response = _login(api, user.username)
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    access = _claims(app, body["access_token"])
    assert access["sub"] == str(user.id)
    assert access["username"] == user.username
    assert access["role"] == role.value
    assert access["typ"] == "access"
    assert 899 < access["exp"] - access["iat"] <= 900
    refresh = _claims(app, body["refresh_token"])
    assert refresh["typ"] == "refresh"
    assert refresh["fam"] == access["fam"]
    assert refresh["sub"] == str(user.id)


def test_access_token_opens_the_api(api: ApiClient) -> None:
    user = api.user()
    token = _login(api, user.username).json["access_token"]
    response = api.get(f"/api/v1/users/{user.id}", headers=_bearer(token))
    assert response.status_code == 200
    assert response.json["username"] == user.username


def test_login_username_is_case_insensitive(api: ApiClient) -> None:
    api.user(username="casey")
    assert _login(api, "CASEY").status_code == 200


def test_wrong_password_and_unknown_user_get_the_same_answer(api: ApiClient) -> None:
    user = api.user()
    wrong_password = _login(api, user.username, "not-the-password")
    unknown_user = _login(api, "nobody-here", "not-the-password")
    for response in (wrong_password, unknown_user):
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong_password.json == unknown_user.json
    assert wrong_password.headers["WWW-Authenticate"] == unknown_user.headers["WWW-Authenticate"]
    assert "access_token" not in wrong_password.get_data(as_text=True)


def test_password_is_not_case_insensitive(api: ApiClient) -> None:
    user = api.user()
    assert_problem(_login(api, user.username, PASSWORD.upper()), 401)


@pytest.mark.parametrize(
    ("body", "locs"),
    [
        ({}, [["password"], ["username"]]),
        ({"username": "alice"}, [["password"]]),
        ({"username": "", "password": "x"}, [["username"]]),
        ({"username": 5, "password": "x"}, [["username"]]),
        ({"username": "alice", "password": None}, [["password"]]),
        ({"username": "u" * 65, "password": "x"}, [["username"]]),
        ({"username": "alice", "password": "p" * 257}, [["password"]]),
        ({"username": "alice", "password": "x", "otp": "123"}, [["otp"]]),
    ],
)
def test_invalid_login_body_is_422(
    api: ApiClient, body: dict[str, Any], locs: list[list[str]]
) -> None:
    problem = assert_problem(api.post(TOKEN, json=body), 422)
    assert sorted(error_locs(problem)) == locs


def test_malformed_login_body_is_400(api: ApiClient) -> None:
    response = api.post(TOKEN, data=b'{"username": "alice", ', content_type="application/json")
    assert_problem(response, 400)


def test_login_body_must_be_json(api: ApiClient) -> None:
    response = api.post(TOKEN, data="username=alice&password=x", content_type="text/plain")
    assert_problem(response, 415)


# Refreshing ----------------------------------------------------------------------------


def test_refresh_gives_a_new_access_token(app: Any, api: ApiClient) -> None:
    user = api.user(Role.OPERATOR)
    tokens = _login(api, user.username).json
    response = api.post(REFRESH, headers=_bearer(tokens["refresh_token"]))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"] not in (None, tokens["refresh_token"])  # rotated
    claims = _claims(app, body["access_token"])
    assert (claims["sub"], claims["username"], claims["role"], claims["typ"]) == (
        str(user.id),
        user.username,
        "operator",
        "access",
    )
    assert api.get("/api/v1/users/", headers=_bearer(body["access_token"])).status_code == 200


def test_refresh_needs_a_refresh_token(api: ApiClient) -> None:
    user = api.user()
    assert_problem(api.post(REFRESH, headers=_bearer(user.access_token)), 401)
    assert_problem(api.post(REFRESH), 401)


def test_refresh_token_does_not_open_the_api(api: ApiClient) -> None:
    user = api.user()
    assert_problem(api.get(f"/api/v1/users/{user.id}", headers=_bearer(user.refresh_token)), 401)


def test_a_role_change_ends_the_sessions_and_a_new_one_carries_the_new_role(
    app: Any, api: ApiClient
) -> None:
    admin, user = api.user(Role.ADMIN), api.user()
    assert (
        api.patch(f"/api/v1/users/{user.id}", as_=admin, json={"role": "admin"}).status_code == 200
    )
    assert_problem(api.post(REFRESH, headers=_bearer(user.refresh_token)), 401)
    token = _login(api, user.username).json["access_token"]
    assert _claims(app, token)["role"] == "admin"


def test_refresh_for_a_deleted_account_is_401(api: ApiClient) -> None:
    user = api.user()
    assert api.delete(f"/api/v1/users/{user.id}", as_=user).status_code == 204
    assert_problem(api.post(REFRESH, headers=_bearer(user.refresh_token)), 401)


# Tokens that are not good enough -------------------------------------------------------


def _forged_tokens(app: Any, user: Any) -> dict[str, str]:
    access, refresh = claims_of(user.access_token), claims_of(user.refresh_token)
    past = {"iat": access["iat"] - 3600, "exp": int(access["iat"]) - 30}
    expired = sign(app, {**access, **past})
    header, payload, _signature = expired.split(".")
    without_role = {k: v for k, v in access.items() if k != "role"}
    return {
        "expired": expired,
        "expired refresh": sign(app, {**refresh, **past}),
        "no role": sign(app, without_role),
        "unknown role": sign(app, {**access, "role": "root"}),
        "bad subject": sign(app, {**access, "sub": "not-a-uuid"}),
        "bad signature": f"{header}.{payload}.c2lnbmF0dXJl",
        "unsigned": f"{header}.{payload}.",
        "garbage": "not.a.jwt",
    }


def test_every_bad_token_is_the_same_401(app: Any, api: ApiClient) -> None:
    user = api.user(Role.ADMIN)
    answers = []
    for name, token in _forged_tokens(app, user).items():
        path = REFRESH if "refresh" in name else "/api/v1/users/"
        method = api.post if path == REFRESH else api.get
        response = method(path, headers=_bearer(token))
        assert_problem(response, 401, name)
        answers.append(response.json)
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", user.access_token):
        response = api.get("/api/v1/users/", headers={"Authorization": header})
        assert_problem(response, 401, header)
        answers.append(response.json)
    assert all(answer == answers[0] for answer in answers)  # the cause is not disclosed
