"""The breaches of the sessions issue, tried over HTTP against ``healthapp run`` as a new user
would, each now refused (SPEC §14).

One stack for the module, in development (rate limits on), behind a pretend proxy
(``TRUSTED_PROXY_COUNT=1``) so that callers can come from different addresses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from healthapp.domain.roles import Role
from healthapp.embedded import start_redis
from tests.factories import PASSWORD, ApiClient, checkup_session
from tests.processes import free_port, stop, wait_until_answering

pytestmark = pytest.mark.slow

#: The development secret the old settings shipped with: it must sign nothing now.
OLD_DEVELOPMENT_SECRET = b"development-only-not-a-secret-do-not-deploy"


class Stack:
    def __init__(self, core: str, reports: str, log: Path) -> None:
        self.core, self.reports, self.log = core, reports, log

    def sign_in(self, username: str, password: str = PASSWORD, address: str = "192.0.2.1") -> Any:
        return httpx.post(
            f"{self.core}/api/v1/auth/token",
            json={"username": username, "password": password},
            headers={"X-Forwarded-For": address},
            timeout=30,
        )

    def tokens(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.sign_in(username, password)
        assert response.status_code == 200, response.text
        return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("trusted-sessions")
    redis_server = start_redis(folder / "redis")
    core_port = free_port(count=2)  # and the Reports API on the next one
    env = {
        **os.environ,
        "HEALTHAPP_ENV": "development",
        "HEALTHAPP_INSTANCE_PATH": str(folder / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "SYNC_INTERVAL_SECONDS": "1",
        "TRUSTED_PROXY_COUNT": "1",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("PROMETHEUS_MULTIPROC_DIR", "METRICS_DIR", "METRICS_TOKEN", "METRICS_BIND"):
        env.pop(name, None)
    log = folder / "run.log"
    command = [
        *(str(Path(sys.executable).with_name("healthapp")), "run", "--workers", "1"),
        *("--core-port", str(core_port), "--reports-port", str(core_port + 1)),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        core, reports = f"http://127.0.0.1:{core_port}", f"http://127.0.0.1:{core_port + 1}"
        deadline = time.monotonic() + 90
        wait_until_answering(f"{core}/readyz", process, deadline)
        wait_until_answering(f"{reports}/readyz", process, deadline)
        yield Stack(core, reports, log)
    finally:
        stop(process)
        redis_server.stop()


@pytest.fixture
def users(api: ApiClient, stack: Stack) -> dict[str, Any]:
    """An admin and a patient with a synced report, made in the database the stack uses."""
    admin = api.user(Role.ADMIN)
    patient = api.user(Role.PATIENT)
    operator = api.user(Role.OPERATOR)
    return {"admin": admin, "patient": patient, "operator": operator, "machine": api.machine()}


def _report_of(stack: Stack, username: str, token: str, deadline_seconds: float = 30) -> Any:
    """The patient's report once the stack's worker has synced it."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        response = httpx.get(f"{stack.reports}/api/v1/users/{username}/", headers=bearer(token))
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def _upload(stack: Stack, token: str, user_id: uuid.UUID, machine: uuid.UUID, start: int) -> None:
    items = checkup_session(user_id, machine, 2, start_minute=start)
    response = httpx.post(
        f"{stack.core}/api/v1/checkups/", json={"checkups": items}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text


def _revoked_within_a_second(stack: Stack, username: str, user_id: uuid.UUID, token: str) -> None:
    started = time.monotonic()
    core = httpx.get(f"{stack.core}/api/v1/users/{user_id}", headers=bearer(token))
    reports = httpx.get(f"{stack.reports}/api/v1/users/{username}/", headers=bearer(token))
    assert (core.status_code, reports.status_code) == (401, 401)
    assert time.monotonic() - started < 1


def test_an_own_password_change_needs_the_current_one_and_ends_the_old_sessions(
    stack: Stack, users: dict[str, Any]
) -> None:
    patient = users["patient"]
    tokens = stack.tokens(patient.username)
    path = f"{stack.core}/api/v1/users/{patient.id}"
    no_current = httpx.patch(
        path, json={"password": "another-long-passphrase"}, headers=bearer(tokens["access_token"])
    )
    assert no_current.status_code == 422, no_current.text
    assert no_current.headers["Content-Type"] == "application/problem+json"
    change = {"password": "another-long-passphrase", "current_password": PASSWORD}
    assert httpx.patch(path, json=change, headers=bearer(tokens["access_token"])).status_code == 200
    refresh = httpx.post(
        f"{stack.core}/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"])
    )
    assert refresh.status_code == 401
    _revoked_within_a_second(stack, patient.username, patient.id, tokens["access_token"])
    assert stack.sign_in(patient.username, "another-long-passphrase").status_code == 200


def test_a_deleted_users_token_never_reads_the_next_user_of_the_name(
    stack: Stack, users: dict[str, Any], api: ApiClient
) -> None:
    admin, patient, operator = users["admin"], users["patient"], users["operator"]
    old = stack.tokens(patient.username)["access_token"]
    staff = stack.tokens(operator.username)["access_token"]
    _upload(stack, staff, patient.id, users["machine"], 0)
    assert _report_of(stack, patient.username, old).status_code == 200
    admin_token = stack.tokens(admin.username)["access_token"]
    deleted = httpx.delete(f"{stack.core}/api/v1/users/{patient.id}", headers=bearer(admin_token))
    assert deleted.status_code == 204
    _revoked_within_a_second(stack, patient.username, patient.id, old)
    # Someone registers the freed name and gets check-ups of their own.
    registered = httpx.post(
        f"{stack.core}/api/v1/users/",
        json={"username": patient.username, "email": "next@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.20"},
    )
    assert registered.status_code == 201, registered.text
    newcomer = uuid.UUID(registered.json()["id"])
    _upload(stack, staff, newcomer, users["machine"], 100)
    fresh = stack.tokens(patient.username)["access_token"]
    assert _report_of(stack, patient.username, fresh).status_code == 200
    again = httpx.get(f"{stack.reports}/api/v1/users/{patient.username}/", headers=bearer(old))
    assert again.status_code == 401


def test_logout_exists_and_ends_the_session_on_both_apis(
    stack: Stack, users: dict[str, Any]
) -> None:
    operator = users["operator"]
    tokens = stack.tokens(operator.username)
    assert (
        httpx.get(
            f"{stack.reports}/api/v1/users/", headers=bearer(tokens["access_token"])
        ).status_code
        == 200
    )
    out = httpx.post(f"{stack.core}/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert out.status_code == 204
    _revoked_within_a_second(stack, operator.username, operator.id, tokens["access_token"])
    refresh = httpx.post(
        f"{stack.core}/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"])
    )
    assert refresh.status_code == 401


def test_metrics_answer_nobody_without_their_token(stack: Stack) -> None:
    for base in (stack.core, stack.reports):
        assert httpx.get(f"{base}/metrics").status_code == 404  # no METRICS_TOKEN, no bind


def test_a_demoted_or_deleted_admins_token_restores_nothing(
    stack: Stack, users: dict[str, Any], api: ApiClient, engine: Engine
) -> None:
    admin = users["admin"]
    other_admin = api.user(Role.ADMIN)
    old = stack.tokens(admin.username)["access_token"]
    boss = stack.tokens(other_admin.username)["access_token"]
    demote = httpx.patch(
        f"{stack.core}/api/v1/users/{admin.id}", json={"role": "patient"}, headers=bearer(boss)
    )
    assert demote.status_code == 200, demote.text
    restore = httpx.patch(
        f"{stack.core}/api/v1/users/{admin.id}", json={"role": "admin"}, headers=bearer(old)
    )
    assert restore.status_code == 401
    new_admin = {
        "username": f"rogue-{uuid.uuid4().hex[:6]}",
        "email": "rogue@example.com",
        "password": PASSWORD,
        "role": "admin",
    }
    create = httpx.post(
        f"{stack.core}/api/v1/users/",
        json=new_admin,
        headers={**bearer(old), "X-Forwarded-For": "198.51.100.30"},
    )
    assert create.status_code == 401
    # Deleted, the admin's token (an unexpired one from before) opens nothing either.
    third = api.user(Role.ADMIN)
    doomed = stack.tokens(third.username)["access_token"]
    assert (
        httpx.delete(f"{stack.core}/api/v1/users/{third.id}", headers=bearer(boss)).status_code
        == 204
    )
    for attempt in (
        httpx.patch(
            f"{stack.core}/api/v1/users/{third.id}", json={"role": "admin"}, headers=bearer(doomed)
        ),
        httpx.post(
            f"{stack.core}/api/v1/users/",
            json=new_admin,
            headers={**bearer(doomed), "X-Forwarded-For": "198.51.100.31"},
        ),
        httpx.get(f"{stack.reports}/api/v1/users/", headers=bearer(doomed)),
    ):
        assert attempt.status_code == 401, attempt.text
    # The creations the boss made are audited, with who made them.
    admin_created = httpx.post(
        f"{stack.core}/api/v1/users/",
        json={
            **new_admin,
            "username": f"ops-{uuid.uuid4().hex[:6]}",
            "email": "ops@example.com",
            "role": "operator",
        },
        headers={**bearer(boss), "X-Forwarded-For": "198.51.100.32"},
    )
    assert admin_created.status_code == 201, admin_created.text
    with engine.connect() as conn:
        actor = conn.execute(
            text(
                "SELECT actor_username FROM audit_events"
                " WHERE action = 'user.create' AND subject_id = :id"
            ),
            {"id": admin_created.json()["id"]},
        ).scalar_one()
    assert actor == other_admin.username


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_a_token_signed_with_the_old_development_secret_opens_nothing(stack: Stack) -> None:
    now = int(time.time())
    forged = _hs256(
        {
            "sub": str(uuid.uuid4()),
            "username": "mallory",
            "role": "admin",
            "type": "access",
            "typ": "access",
            "fam": str(uuid.uuid4()),
            "jti": "x",
            "iss": "healthapp",
            "iat": now,
            "nbf": now,
            "exp": now + 10 * 365 * 24 * 3600,
        },
        OLD_DEVELOPMENT_SECRET,
    )
    assert httpx.get(f"{stack.core}/api/v1/users/", headers=bearer(forged)).status_code == 401
    assert httpx.get(f"{stack.reports}/api/v1/users/", headers=bearer(forged)).status_code == 401


def test_a_strangers_wrong_passwords_do_not_lock_the_owner_out(
    stack: Stack, users: dict[str, Any]
) -> None:
    patient = users["patient"]
    stranger = "203.0.113.66"
    answers = [
        stack.sign_in(patient.username, "wrong-password-guess", stranger).status_code
        for _ in range(6)
    ]
    assert answers == [401] * 5 + [429]
    # A spoofed address cannot reset the stranger's count: the proxy's hop is the one taken.
    assert (
        stack.sign_in(patient.username, "wrong-password-guess", f"10.9.9.9, {stranger}").status_code
        == 429
    )
    # The owner, from their own address, still gets in.
    assert stack.sign_in(patient.username, PASSWORD, "198.51.100.7").status_code == 200
