"""Login rate limits (SPEC §4): a 429 problem with Retry-After, in memory or in Redis.

Each test builds its own Core API with rate limiting on; the suite's app keeps it off.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app
from healthapp.extensions import limiter
from tests.assertions import assert_problem
from tests.factories import PASSWORD, ApiClient

TOKEN = "/api/v1/auth/token"
#: How the limits library names its counters in Redis.
REDIS_KEYS = "LIMITS:LIMITER/healthapp-rl/*"

LimitedApp = Callable[..., Any]


@pytest.fixture
def limited_app(app: Any, database_url: str, engine: Engine) -> Iterator[LimitedApp]:
    """Builds a Core API with rate limits on (in memory, or in Redis given ``redis_url``)."""

    def build(
        *,
        per_user: str = "3/minute",
        per_address: str = "60/minute",
        redis_url: str | None = None,
        store_timeout_seconds: int = 3,
    ) -> Any:
        settings = config.Testing()
        settings.DATABASE_URL = database_url
        settings.REDIS_URL = redis_url
        settings.STORE_TIMEOUT_SECONDS = store_timeout_seconds
        settings.RATELIMIT_ENABLED = True
        settings.LOGIN_RATE_LIMIT_PER_USER = per_user
        settings.LOGIN_RATE_LIMIT_PER_ADDRESS = per_address
        return create_app(settings, engine=engine)

    yield build
    # Flask-Limiter keeps its storage and on/off switch on the one extension object, not
    # per app: give it back to the suite's app (limits off), or later tests are limited.
    limiter.init_app(app)


def _attempt(client: Any, username: str, password: str = "not-the-password") -> Any:
    return client.post(TOKEN, json={"username": username, "password": password})


def _assert_rate_limited(response: Any) -> None:
    body = assert_problem(response, 429)
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert "rate limit" in body["detail"].lower()


def _assert_per_user_limit(client: Any, username: str) -> None:
    for _ in range(3):
        assert_problem(_attempt(client, username), 401)
    _assert_rate_limited(_attempt(client, username))
    # The right password does not get past the limit either.
    _assert_rate_limited(_attempt(client, username, PASSWORD))


def test_per_user_limit_in_memory(
    limited_app: LimitedApp, api: ApiClient, redis_client: redis.Redis
) -> None:
    user = api.user()
    client = limited_app().test_client()
    _assert_per_user_limit(client, user.username)
    assert redis_client.keys(REDIS_KEYS) == []


def test_per_user_limit_in_redis(
    limited_app: LimitedApp, api: ApiClient, redis_url: str, redis_client: redis.Redis
) -> None:
    user = api.user()
    client = limited_app(redis_url=redis_url).test_client()
    _assert_per_user_limit(client, user.username)
    keys = redis_client.keys(REDIS_KEYS)  # the counters live in Redis
    assert any(f"login-user:{user.username}".encode() in key for key in keys)


def test_limit_is_shared_between_apps_using_the_same_redis(
    limited_app: LimitedApp, api: ApiClient, redis_url: str, redis_client: redis.Redis
) -> None:
    # Two API processes behind a load balancer count the same attempts.
    user = api.user()
    first = limited_app(redis_url=redis_url).test_client()
    for _ in range(3):
        assert_problem(_attempt(first, user.username), 401)
    second = limited_app(redis_url=redis_url).test_client()
    _assert_rate_limited(_attempt(second, user.username))


def test_logins_within_the_limit_succeed(limited_app: LimitedApp, api: ApiClient) -> None:
    user = api.user()
    client = limited_app().test_client()
    for _ in range(3):
        response = _attempt(client, user.username, PASSWORD)
        assert response.status_code == 200
        assert int(response.headers["X-RateLimit-Limit"]) == 3
    _assert_rate_limited(_attempt(client, user.username, PASSWORD))


def test_per_user_limit_counts_every_spelling_of_a_username(
    limited_app: LimitedApp, api: ApiClient
) -> None:
    api.user(username="mallory")
    client = limited_app().test_client()
    for spelling in ("mallory", "MALLORY", "Mallory"):
        assert_problem(_attempt(client, spelling), 401)
    _assert_rate_limited(_attempt(client, "mAlLoRy"))


def test_per_user_limit_leaves_other_users_alone(limited_app: LimitedApp, api: ApiClient) -> None:
    target, bystander = api.user(), api.user()
    client = limited_app().test_client()
    for _ in range(4):
        _attempt(client, target.username)
    _assert_rate_limited(_attempt(client, target.username))
    assert _attempt(client, bystander.username, PASSWORD).status_code == 200


def test_per_address_limit_counts_every_username(limited_app: LimitedApp, api: ApiClient) -> None:
    client = limited_app(per_user="100/minute", per_address="2/minute").test_client()
    assert_problem(_attempt(client, "first-guess"), 401)
    assert_problem(_attempt(client, "second-guess"), 401)
    _assert_rate_limited(_attempt(client, "third-guess"))


def test_other_endpoints_are_not_login_limited(limited_app: LimitedApp, api: ApiClient) -> None:
    user = api.user()
    client = limited_app(per_user="1/minute", per_address="1/minute").test_client()
    for _ in range(5):
        response = client.get(f"/api/v1/users/{user.id}", headers=user.headers)
        assert response.status_code == 200


def test_handing_the_limiter_back_turns_limits_off_for_the_suite_app(
    limited_app: LimitedApp, app: Any, api: ApiClient
) -> None:
    user = api.user()
    limited = limited_app(per_user="1/minute").test_client()
    _attempt(limited, user.username)
    _assert_rate_limited(_attempt(limited, user.username))
    limiter.init_app(app)
    for _ in range(3):
        assert _attempt(api.client, user.username, PASSWORD).status_code == 200


def test_a_redis_that_never_answers_holds_a_login_one_store_timeout_per_limit(
    limited_app: LimitedApp, api: ApiClient
) -> None:
    """The limits fail open, each check waiting up to ``STORE_TIMEOUT_SECONDS``, no longer."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections are accepted by the kernel and never answered
    try:
        app = limited_app(
            redis_url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0", store_timeout_seconds=1
        )
        user = api.user()
        started = time.monotonic()
        response = _attempt(app.test_client(), user.username, PASSWORD)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert response.status_code == 200, response.json
    assert elapsed < 2 * 1 + 1, f"the login took {elapsed:.2f} s for two limits"


#: Bodies a key function that reads the username must survive: JSON nested 1,000 levels
#: deep (within orjson's limit of 1,024, so it parses) in and out of the username, deeper
#: than that (so it does not parse), and usernames that are not strings.
DEEP = 1_000
ODD_BODIES = {
    "a list nested 1,000 deep": "[" * DEEP + "]" * DEEP,
    "a username nested 1,000 deep": '{"username": ' + "[" * DEEP + "]" * DEEP + "}",
    "a username of objects nested 1,000 deep": '{"username": '
    + '{"a": ' * DEEP
    + "1"
    + "}" * DEEP
    + ', "password": "x"}',
    "a list nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "a number as username": '{"username": 12345, "password": "x"}',
    "an empty username": '{"username": "", "password": "x"}',
}


@pytest.mark.parametrize("body", ODD_BODIES.values(), ids=ODD_BODIES.keys())
def test_a_body_without_a_string_username_is_limited_by_address_and_logs_nothing(
    limited_app: LimitedApp, api: ApiClient, caplog: pytest.LogCaptureFixture, body: str
) -> None:
    client = limited_app(per_user="3/minute", per_address="60/minute").test_client()
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            response = client.post(TOKEN, data=body, content_type="application/json")
            assert response.status_code in (400, 422), response.json
            assert_problem(response, response.status_code)
            assert int(response.headers["X-RateLimit-Limit"]) == 3  # the per-user limit counted
        _assert_rate_limited(client.post(TOKEN, data=body, content_type="application/json"))
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert failures == [], [r.getMessage() for r in failures]
    assert "Traceback" not in caplog.text


def test_odd_bodies_and_a_real_username_are_counted_apart(
    limited_app: LimitedApp, api: ApiClient
) -> None:
    # Keyed by the address, odd bodies never use up a named user's attempts.
    user = api.user()
    client = limited_app(per_user="2/minute", per_address="60/minute").test_client()
    for _ in range(2):
        client.post(
            TOKEN, data=ODD_BODIES["a username nested 1,000 deep"], content_type="application/json"
        )
    assert _attempt(client, user.username, PASSWORD).status_code == 200
