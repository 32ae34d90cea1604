"""``healthapp create-admin``: the first admin, made by the real console script (SPEC §4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.assertions import assert_problem
from tests.factories import ApiClient

HEALTHAPP = Path(sys.executable).with_name("healthapp")
ADMIN_PASSWORD = "first-admin-password"


def _create_admin(
    database_url: str, cwd: Path, *args: str, stdin: str = ADMIN_PASSWORD + "\n"
) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("REDIS_URL", "HEALTHAPP_SECRETS_FILE", "DATABASE_URL")
    }
    env.update(DATABASE_URL=database_url, HEALTHAPP_ENV="testing")
    return subprocess.run(
        [str(HEALTHAPP), "create-admin", *args, "--password-stdin"],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _login(api: ApiClient, username: str, password: str = ADMIN_PASSWORD) -> Any:
    return api.post("/api/v1/auth/token", json={"username": username, "password": password})


@pytest.mark.slow
def test_create_admin_then_log_in_through_the_api(
    database_url: str, api: ApiClient, tmp_path: Path
) -> None:
    result = _create_admin(database_url, tmp_path, "chief", "--email", "chief@example.com")
    assert result.returncode == 0, result.stderr
    assert "created admin chief" in result.stdout
    assert ADMIN_PASSWORD not in result.stdout + result.stderr

    login = _login(api, "chief")
    assert login.status_code == 200, login.json
    token = login.json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    # An admin's powers: list users, register staff.
    users = api.get("/api/v1/users/?username=chief", headers=headers).json["items"]
    assert [(u["role"], u["email"]) for u in users] == [("admin", "chief@example.com")]
    operator = api.post(
        "/api/v1/users/",
        headers=headers,
        json={
            "username": "nurse",
            "email": "nurse@example.com",
            "password": "0123456789",
            "role": "operator",
        },
    )
    assert operator.status_code == 201, operator.json


@pytest.mark.slow
def test_create_admin_refuses_a_taken_username(
    database_url: str, api: ApiClient, tmp_path: Path
) -> None:
    assert _create_admin(database_url, tmp_path, "chief").returncode == 0
    again = _create_admin(database_url, tmp_path, "chief", stdin="another-password-0\n")
    assert again.returncode != 0
    assert "username is taken" in again.stderr
    assert _login(api, "chief").status_code == 200
    assert_problem(_login(api, "chief", "another-password-0"), 401)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("username", "password", "field"),
    [("chief", "short\n", "password"), ("x", ADMIN_PASSWORD + "\n", "username")],
)
def test_create_admin_refuses_invalid_accounts(
    database_url: str, api: ApiClient, tmp_path: Path, username: str, password: str, field: str
) -> None:
    result = _create_admin(database_url, tmp_path, username, stdin=password)
    assert result.returncode != 0
    assert f"{field}:" in result.stderr
    assert password.strip() not in result.stderr
    assert_problem(_login(api, username, password.strip()), 401)
