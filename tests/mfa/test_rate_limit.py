"""The enrolment calls prove a password, so they are rate limited as the login is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app
from healthapp.domain.roles import Role
from healthapp.extensions import limiter
from tests.assertions import assert_problem
from tests.factories import PASSWORD, ApiClient
from tests.mfa.enrolment import CONFIRM, ENROL


@pytest.fixture
def limited_client(app: Any, database_url: str, engine: Engine) -> Iterator[Any]:
    """A client of a Core API whose login limits are on: 3 a minute per username."""
    settings = config.Testing()
    settings.DATABASE_URL = database_url
    settings.REDIS_URL = None
    settings.RATELIMIT_ENABLED = True
    settings.LOGIN_RATE_LIMIT_PER_USER = "3/minute"
    yield create_app(settings, engine=engine).test_client()
    limiter.init_app(app)  # the limiter is one object: give the suite's app its own back


@pytest.mark.parametrize("path", [ENROL, CONFIRM])
def test_password_guesses_through_the_enrolment_are_limited(
    limited_client: Any, api: ApiClient, path: str
) -> None:
    admin = api.user(Role.ADMIN)
    guess = {"username": admin.username, "password": "a-guess-at-it", "code": "123456"}
    for _ in range(3):
        assert_problem(limited_client.post(path, json=guess), 401)
    limited = limited_client.post(path, json={**guess, "password": PASSWORD})
    assert_problem(limited, 429)
    assert int(limited.headers["Retry-After"]) > 0
