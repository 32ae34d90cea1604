"""Login gives nothing away (same answer, same work) and login and uploads are rate limited."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from healthapp.domain.roles import Role
from healthapp.extensions import limiter
from tests.assertions import assert_problem
from tests.factories import ApiClient
from tests.security.apps import build_apps

TOKEN = "/api/v1/auth/token"
UPLOAD = "/api/v1/checkups/"


@pytest.fixture
def core_with(app: Any, database_url: str, redis_url: str, engine: Engine) -> Iterator[Any]:
    """Builds a Core API with chosen settings; the suite's app gets the limiter back after."""

    def build(**values: Any) -> Any:
        core, _reports = build_apps(
            database_url=database_url, redis_url=redis_url, engine=engine, **values
        )
        return core

    yield build
    limiter.init_app(app)


def _login_time(client: Any, username: str, password: str) -> tuple[Any, float]:
    started = time.perf_counter()
    response = client.post(TOKEN, json={"username": username, "password": password})
    return response, time.perf_counter() - started


def test_unknown_user_and_wrong_password_answer_alike_in_comparable_time(
    core_with: Any, client: Any
) -> None:
    core = core_with(PASSWORD_HASH_FAST=False)  # the production argon2id parameters
    user = ApiClient(core, core.test_client()).user(Role.PATIENT)
    test_client = core.test_client()
    _login_time(test_client, "warm-up-user", "warm-up-password")
    wrong, unknown = [], []
    for _ in range(5):
        wrong.append(_login_time(test_client, user.username, "not-the-password"))
        unknown.append(_login_time(test_client, "nobody-by-that-name", "not-the-password"))
    for response, _elapsed in wrong + unknown:
        assert_problem(response, 401)
    assert wrong[0][0].json == unknown[0][0].json
    assert wrong[0][0].headers["WWW-Authenticate"] == unknown[0][0].headers["WWW-Authenticate"]
    wrong_median = statistics.median(t for _r, t in wrong)
    unknown_median = statistics.median(t for _r, t in unknown)
    # Both run one argon2id verification; skipping it would make the unknown user ~100x faster.
    assert 0.5 < unknown_median / wrong_median < 2, (wrong_median, unknown_median)


def _upload(client: Any, token: str, address: str) -> Any:
    return client.post(
        UPLOAD,
        json={"checkups": []},
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_uploads_are_limited_per_client_with_a_429_problem(core_with: Any, client: Any) -> None:
    core = core_with(RATELIMIT_ENABLED=True, UPLOAD_RATE_LIMIT_PER_ADDRESS="2/minute")
    operator = ApiClient(core, core.test_client()).user(Role.OPERATOR)
    limited_client = core.test_client()
    for _ in range(2):
        assert _upload(limited_client, operator.access_token, "10.0.0.1").status_code == 200
    limited = _upload(limited_client, operator.access_token, "10.0.0.1")
    body = assert_problem(limited, 429)
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert "rate limit" in body["detail"].lower()
    # Another client is not held back by the first one's uploads.
    assert _upload(limited_client, operator.access_token, "10.0.0.2").status_code == 200


def test_login_is_limited_per_client_address(core_with: Any, client: Any) -> None:
    core = core_with(
        RATELIMIT_ENABLED=True,
        LOGIN_RATE_LIMIT_PER_ADDRESS="2/minute",
        LOGIN_RATE_LIMIT_PER_USER="100/minute",
    )
    test_client = core.test_client()

    def attempt(username: str, address: str) -> Any:
        return test_client.post(
            TOKEN,
            json={"username": username, "password": "not-the-password"},
            environ_base={"REMOTE_ADDR": address},
        )

    assert_problem(attempt("first", "10.0.0.1"), 401)
    assert_problem(attempt("second", "10.0.0.1"), 401)
    limited = attempt("third", "10.0.0.1")
    assert_problem(limited, 429)
    assert int(limited.headers["Retry-After"]) > 0
    assert_problem(attempt("third", "10.0.0.2"), 401)
