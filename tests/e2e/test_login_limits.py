"""End to end: the login limits under gunicorn, over HTTP. gunicorn itself never takes a
client address from ``X-Forwarded-For``; the app does so only with ``TRUSTED_PROXY_COUNT``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.factories import PASSWORD, ApiClient
from tests.processes import running_gunicorn

pytestmark = pytest.mark.slow


def _login(base: str, username: str, password: str, forwarded_for: str) -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/auth/token",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30,
    )


def test_a_forged_forwarded_for_dodges_no_limit(
    database_url: str, tmp_path: Path, api: ApiClient
) -> None:
    user = api.user()
    with running_gunicorn(
        database_url,
        tmp_path / "gunicorn.log",
        RATELIMIT_ENABLED="1",
        LOGIN_RATE_LIMIT_PER_ADDRESS="3/minute",
    ) as base:
        answers = [
            _login(base, f"guess-{n}", "not-the-password", f"203.0.113.{n}") for n in range(4)
        ]
        owner = _login(base, user.username, PASSWORD, "198.51.100.7")
    assert [r.status_code for r in answers] == [401, 401, 401, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert owner.status_code == 429  # one address for all: the header changed nothing


def test_behind_a_proxy_five_wrong_passwords_from_a_stranger_leave_the_owner_in(
    database_url: str, tmp_path: Path, api: ApiClient
) -> None:
    user = api.user()
    with running_gunicorn(
        database_url, tmp_path / "gunicorn.log", RATELIMIT_ENABLED="1", TRUSTED_PROXY_COUNT="1"
    ) as base:
        # As a proxy forwards them: each request names the address the proxy saw.
        stranger = [
            _login(base, user.username, "not-the-password", "203.0.113.66") for _ in range(6)
        ]
        owner = _login(base, user.username, PASSWORD, "198.51.100.7")
    assert [r.status_code for r in stranger] == [401] * 5 + [429]
    assert owner.status_code == 200, owner.text
    assert owner.json()["access_token"]
