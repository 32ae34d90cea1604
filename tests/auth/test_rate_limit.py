"""Login and registration rate limits (SPEC §4, §14): a 429 problem with Retry-After, in
memory or in Redis, counted against the client address ``TRUSTED_PROXY_COUNT`` says.

Each test builds its own Core API with rate limiting on; the suite's app keeps it off.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from healthapp import config
from healthapp.app import create_app
from healthapp.domain.roles import Role
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
        **values: Any,
    ) -> Any:
        settings = config.Testing()
        settings.DATABASE_URL = database_url
        settings.REDIS_URL = redis_url
        settings.STORE_TIMEOUT_SECONDS = store_timeout_seconds
        settings.RATELIMIT_ENABLED = True
        settings.LOGIN_RATE_LIMIT_PER_USER = per_user
        settings.LOGIN_RATE_LIMIT_PER_ADDRESS = per_address
        for name, value in values.items():
            setattr(settings, name, value)
        return create_app(settings, engine=engine)

    yield build
    # Flask-Limiter keeps its storage and on/off switch on the one extension object, not
    # per app: give it back to the suite's app (limits off), or later tests are limited.
    limiter.init_app(app)


def _attempt(
    client: Any,
    username: str,
    password: str = "not-the-password",
    *,
    address: str = "127.0.0.1",
    forwarded_for: str | None = None,
) -> Any:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        TOKEN,
        json={"username": username, "password": password},
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )


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


@pytest.mark.parametrize("in_redis", [False, True], ids=["in memory", "in redis"])
def test_the_owners_sign_ins_never_add_up_to_a_lockout(
    limited_app: LimitedApp, api: ApiClient, redis_url: str, in_redis: bool
) -> None:
    # The per (username, address) limit counts the failures since the last success.
    user = api.user()
    client = limited_app(redis_url=redis_url if in_redis else None).test_client()
    for _ in range(5):
        response = _attempt(client, user.username, PASSWORD)
        assert response.status_code == 200
        assert int(response.headers["X-RateLimit-Limit"]) == 3
    for _ in range(3):
        assert_problem(_attempt(client, user.username), 401)
        assert_problem(_attempt(client, user.username), 401)  # two typos, then it works
        assert _attempt(client, user.username, PASSWORD).status_code == 200
    for _ in range(3):
        assert_problem(_attempt(client, user.username), 401)
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


# No stranger locks the owner out -------------------------------------------------------

STRANGER, OWNER, PROXY = "203.0.113.66", "198.51.100.7", "10.0.0.254"


def _counter_keys(redis_client: redis.Redis) -> list[str]:
    return [key.decode() for key in redis_client.keys(REDIS_KEYS)]


def test_a_strangers_wrong_passwords_do_not_lock_the_owner_out(
    limited_app: LimitedApp, api: ApiClient, redis_url: str, redis_client: redis.Redis
) -> None:
    user = api.user()
    client = limited_app(
        redis_url=redis_url, LOGIN_RATE_LIMIT_PER_USERNAME="5/minute"
    ).test_client()
    for _ in range(3):
        assert_problem(_attempt(client, user.username, address=STRANGER), 401)
    # Hammering on is refused unchecked, the right password too, and counted nowhere: the
    # per-username cap of 5 still has room for the owner.
    for _ in range(10):
        _assert_rate_limited(_attempt(client, user.username, address=STRANGER))
    _assert_rate_limited(_attempt(client, user.username, PASSWORD, address=STRANGER))
    response = _attempt(client, user.username, PASSWORD, address=OWNER)
    assert response.status_code == 200, response.json
    keys = _counter_keys(redis_client)
    assert any(f"login-user:{user.username}@{STRANGER}/" in key for key in keys), keys


def test_the_per_username_cap_counts_failures_from_every_address(
    limited_app: LimitedApp, api: ApiClient, redis_url: str
) -> None:
    user, bystander = api.user(), api.user()
    client = limited_app(
        redis_url=redis_url, LOGIN_RATE_LIMIT_PER_USERNAME="5/minute"
    ).test_client()
    for address in ["203.0.113.1"] * 3 + ["203.0.113.2"] * 2:
        assert_problem(_attempt(client, user.username, address=address), 401)
    # Five addresses' worth of failures: now the owner waits too, as anyone would.
    _assert_rate_limited(_attempt(client, user.username, PASSWORD, address=OWNER))
    assert _attempt(client, bystander.username, PASSWORD, address=OWNER).status_code == 200


def test_attempts_another_limit_refused_are_no_failed_logins(
    limited_app: LimitedApp, api: ApiClient, redis_url: str
) -> None:
    user = api.user()
    client = limited_app(
        redis_url=redis_url, per_address="2/minute", LOGIN_RATE_LIMIT_PER_USERNAME="2/minute"
    ).test_client()
    for n in range(2):
        assert_problem(_attempt(client, f"guess-{n}", address=STRANGER), 401)
    for _ in range(3):  # the address has used its attempts: refused before any password
        _assert_rate_limited(_attempt(client, user.username, address=STRANGER))
    assert_problem(_attempt(client, user.username, address="203.0.113.9"), 401)
    # One failure counted against the username, not four: the owner still gets in.
    assert _attempt(client, user.username, PASSWORD, address=OWNER).status_code == 200


def test_wrong_passwords_sent_at_once_from_one_address_are_counted_as_they_arrive(
    limited_app: LimitedApp, redis_url: str
) -> None:
    """The pair limit counts each attempt as it is checked, so a burst cannot slip past it
    while the first attempts are still verifying their passwords."""
    app = limited_app(
        redis_url=redis_url,
        LOGIN_RATE_LIMIT_PER_USERNAME="5/minute",
        PASSWORD_HASH_FAST=False,  # a production hash: each verification takes a while
    )
    user = ApiClient(app, app.test_client()).user()
    burst = 12
    barrier = threading.Barrier(burst)

    def attempt(_n: int) -> int:
        client = app.test_client()
        barrier.wait()
        return int(_attempt(client, user.username, address=STRANGER).status_code)

    with ThreadPoolExecutor(burst) as pool:
        statuses = sorted(pool.map(attempt, range(burst)))
    assert statuses == [401] * 3 + [429] * (burst - 3)
    response = _attempt(app.test_client(), user.username, PASSWORD, address=OWNER)
    assert response.status_code == 200, response.json


# Which address is counted: TRUSTED_PROXY_COUNT ------------------------------------------


def test_with_no_trusted_proxy_a_forged_forwarded_for_dodges_no_login_limit(
    limited_app: LimitedApp, api: ApiClient, redis_url: str
) -> None:
    user = api.user()
    client = limited_app(redis_url=redis_url, per_address="5/minute").test_client()
    for n in range(3):
        forged = f"10.9.0.{n}"
        assert_problem(_attempt(client, user.username, address=STRANGER, forwarded_for=forged), 401)
    _assert_rate_limited(
        _attempt(client, user.username, PASSWORD, address=STRANGER, forwarded_for="10.9.0.99")
    )
    # The per-address limit counts the same way, whatever the usernames.
    for n in range(2):
        forged = f"10.9.1.{n}"
        assert_problem(_attempt(client, f"guess-{n}", address=STRANGER, forwarded_for=forged), 401)
    _assert_rate_limited(_attempt(client, "guess-9", address=STRANGER, forwarded_for="10.9.1.9"))
    assert _attempt(client, user.username, PASSWORD, address=OWNER).status_code == 200


def test_behind_one_trusted_proxy_the_address_it_forwarded_is_counted(
    limited_app: LimitedApp, api: ApiClient, redis_url: str, redis_client: redis.Redis
) -> None:
    user = api.user()
    client = limited_app(redis_url=redis_url, TRUSTED_PROXY_COUNT=1).test_client()
    # The stranger writes a header of their own; the proxy appends the address it saw.
    for n in range(3):
        forwarded = f"10.9.0.{n}, {STRANGER}"
        assert_problem(_attempt(client, user.username, address=PROXY, forwarded_for=forwarded), 401)
    _assert_rate_limited(
        _attempt(
            client, user.username, PASSWORD, address=PROXY, forwarded_for=f"10.9.0.9, {STRANGER}"
        )
    )
    # The owner, through the same proxy, is another client.
    response = _attempt(client, user.username, PASSWORD, address=PROXY, forwarded_for=OWNER)
    assert response.status_code == 200, response.json
    keys = _counter_keys(redis_client)
    assert any(f"login-user:{user.username}@{STRANGER}/" in key for key in keys), keys
    assert not any(PROXY in key for key in keys), keys


# Registration --------------------------------------------------------------------------

REGISTER = "/api/v1/users/"


def _register(
    client: Any,
    *,
    address: str = STRANGER,
    forwarded_for: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    username = f"newcomer-{uuid.uuid4().hex[:12]}"
    all_headers = dict(headers or {})
    if forwarded_for:
        all_headers["X-Forwarded-For"] = forwarded_for
    return client.post(
        REGISTER,
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        headers=all_headers,
        environ_base={"REMOTE_ADDR": address},
    )


def _assert_registration_limited(response: Any) -> None:
    body = assert_problem(response, 429)
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    assert "rate limit" in body["detail"].lower()


def test_registration_is_limited_per_address(
    limited_app: LimitedApp, redis_url: str, redis_client: redis.Redis
) -> None:
    client = limited_app(
        redis_url=redis_url, REGISTER_RATE_LIMIT_PER_ADDRESS="2/hour"
    ).test_client()
    for _ in range(2):
        assert _register(client).status_code == 201
    limited = _register(client)
    _assert_registration_limited(limited)
    assert int(limited.headers["X-RateLimit-Limit"]) == 2
    assert _register(client, address=OWNER).status_code == 201
    assert any(f"/{STRANGER}/" in key and "register" in key for key in _counter_keys(redis_client))


def test_the_registration_limit_defaults_to_ten_an_hour(limited_app: LimitedApp) -> None:
    client = limited_app().test_client()
    for _ in range(10):
        assert _register(client).status_code == 201
    _assert_registration_limited(_register(client))


def test_with_no_trusted_proxy_a_forged_forwarded_for_dodges_no_registration_limit(
    limited_app: LimitedApp, redis_url: str
) -> None:
    client = limited_app(
        redis_url=redis_url, REGISTER_RATE_LIMIT_PER_ADDRESS="2/hour"
    ).test_client()
    for n in range(2):
        assert _register(client, forwarded_for=f"10.9.0.{n}").status_code == 201
    _assert_registration_limited(_register(client, forwarded_for="10.9.0.9"))


def test_behind_one_trusted_proxy_registrations_count_per_forwarded_address(
    limited_app: LimitedApp, redis_url: str
) -> None:
    client = limited_app(
        redis_url=redis_url, REGISTER_RATE_LIMIT_PER_ADDRESS="2/hour", TRUSTED_PROXY_COUNT=1
    ).test_client()
    for n in range(2):
        forwarded = f"10.9.0.{n}, {STRANGER}"
        assert _register(client, address=PROXY, forwarded_for=forwarded).status_code == 201
    _assert_registration_limited(_register(client, address=PROXY, forwarded_for=STRANGER))
    assert _register(client, address=PROXY, forwarded_for=OWNER).status_code == 201


def test_an_admin_creating_accounts_is_not_held_back_by_the_registration_limit(
    limited_app: LimitedApp, api: ApiClient, redis_url: str, engine: Engine
) -> None:
    admin, patient, demoted = api.user(Role.ADMIN), api.user(), api.user(Role.ADMIN)
    client = limited_app(
        redis_url=redis_url, REGISTER_RATE_LIMIT_PER_ADDRESS="1/hour"
    ).test_client()
    assert _register(client).status_code == 201
    _assert_registration_limited(_register(client))
    for _ in range(3):
        assert _register(client, headers=admin.headers).status_code == 201
    # Neither another role's token nor a bad one exempts a registration; neither does a
    # token that still says admin for an account that no longer is one.
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'patient' WHERE id = :id"), {"id": demoted.id})
    for headers in (
        patient.headers,
        {"Authorization": "Bearer not-a-token"},
        demoted.headers,
    ):
        _assert_registration_limited(_register(client, headers=headers))
