"""Logins are audited (SPEC §14): ``auth.login`` and ``auth.login_failed``, with the
username tried and the client address, never the password, stored although a refused
login's request fails."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app
from healthapp.domain.roles import Role
from healthapp.extensions import limiter
from tests.assertions import assert_problem
from tests.factories import PASSWORD, ApiClient, audit_events

TOKEN = "/api/v1/auth/token"
WRONG = "not-the-password-3f1c"
PROXY, CLIENT = "10.0.0.254", "203.0.113.66"


def _login(
    client: Any,
    username: str,
    password: str,
    *,
    address: str = "198.51.100.7",
    forwarded_for: str | None = None,
) -> Any:
    headers = {"X-Request-ID": f"login-{uuid.uuid4().hex[:12]}"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return client.post(
        TOKEN,
        json={"username": username, "password": password},
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )


def _trail(api: ApiClient, admin: Any, **query: str) -> list[dict[str, Any]]:
    """The events the admin audit endpoint lists for ``query``, newest first."""
    response = api.get("/api/v1/audit/", as_=admin, query_string=query)
    assert response.status_code == 200, response.json
    items: list[dict[str, Any]] = response.json["items"]
    return items


def test_a_sign_in_is_recorded_with_who_and_from_where(api: ApiClient) -> None:
    user, admin = api.user(), api.user(Role.ADMIN)
    response = _login(api.client, user.username, PASSWORD)
    assert response.status_code == 200, response.json
    [event] = _trail(api, admin, action="auth.login", username=user.username)
    assert event["actor_id"] == str(user.id)
    assert event["actor_username"] == user.username
    assert event["actor_role"] == "patient"
    assert event["subject_id"] == str(user.id)
    assert event["subject_username"] == user.username
    assert event["details"] == {"address": "198.51.100.7"}
    assert event["request_id"] == response.headers["X-Request-ID"]
    assert _trail(api, admin, action="auth.login_failed", username=user.username) == []


def test_a_wrong_password_is_recorded_without_the_password(api: ApiClient, engine: Engine) -> None:
    user, admin = api.user(), api.user(Role.ADMIN)
    response = _login(api.client, user.username.upper(), WRONG)
    assert_problem(response, 401)
    [event] = _trail(api, admin, action="auth.login_failed", username=user.username)
    assert event["actor_id"] is None
    assert event["actor_username"] == "anonymous"
    assert event["subject_id"] == str(user.id)
    assert event["subject_username"] == user.username  # as looked up: lower case
    assert event["details"] == {"address": "198.51.100.7"}
    assert event["request_id"] == response.headers["X-Request-ID"]
    assert _trail(api, admin, action="auth.login", username=user.username) == []
    # Committed although its request failed, and nowhere holding the password.
    stored = audit_events(engine, action="auth.login_failed")
    assert len(stored) == 1
    assert WRONG not in orjson.dumps(stored, default=str).decode()


def test_an_unknown_username_is_recorded_alike(api: ApiClient) -> None:
    admin, user = api.user(Role.ADMIN), api.user()
    unknown = _login(api.client, "Nobody-By-That-Name", WRONG)
    wrong = _login(api.client, user.username, WRONG)
    assert assert_problem(unknown, 401) == assert_problem(wrong, 401)
    [event] = _trail(api, admin, action="auth.login_failed", username="nobody-by-that-name")
    assert event["subject_id"] is None
    assert event["details"] == {"address": "198.51.100.7"}


def test_a_name_longer_than_any_username_is_a_401_recorded_cut_to_a_usernames_length(
    api: ApiClient, engine: Engine
) -> None:
    tried = "A" * 40 + "b" * 24  # the longest the login body takes; no username is over 32
    assert_problem(_login(api.client, tried, WRONG), 401)
    [event] = audit_events(engine, action="auth.login_failed")
    assert event["subject_username"] == "a" * 32
    assert event["subject_id"] is None


def test_a_body_that_names_no_user_records_nothing(api: ApiClient, engine: Engine) -> None:
    response = api.post(TOKEN, json={"username": "someone"})  # no password: nothing tried
    assert_problem(response, 422)
    assert audit_events(engine, action="auth.login_failed") == []


BuildCore = Callable[..., Any]


@pytest.fixture
def core_with(app: Any, database_url: str, engine: Engine) -> Iterator[BuildCore]:
    """Builds a Core API with chosen settings; the suite's app gets the limiter back after."""

    def build(**values: Any) -> Any:
        settings = config.Testing()
        settings.DATABASE_URL = database_url
        settings.REDIS_URL = None
        for name, value in values.items():
            setattr(settings, name, value)
        return create_app(settings, engine=engine)

    yield build
    limiter.init_app(app)


@pytest.mark.parametrize(
    ("trusted_proxies", "recorded"), [(0, PROXY), (1, CLIENT)], ids=["no proxy", "one proxy"]
)
def test_the_recorded_address_is_the_one_trusted_proxy_count_names(
    core_with: BuildCore, api: ApiClient, engine: Engine, trusted_proxies: int, recorded: str
) -> None:
    user = api.user()
    client = core_with(TRUSTED_PROXY_COUNT=trusted_proxies).test_client()
    # What the client wrote itself comes first; the proxy appends the address it saw.
    forwarded = f"10.9.9.9, {CLIENT}"
    assert_problem(
        _login(client, user.username, WRONG, address=PROXY, forwarded_for=forwarded), 401
    )
    ok = _login(client, user.username, PASSWORD, address=PROXY, forwarded_for=forwarded)
    assert ok.status_code == 200, ok.json
    events = audit_events(engine, subject_username=user.username)
    assert [(e["action"], e["details"]) for e in events if e["action"].startswith("auth.")] == [
        ("auth.login_failed", {"address": recorded}),
        ("auth.login", {"address": recorded}),
    ]
