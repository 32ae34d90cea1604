"""Both APIs under gunicorn while a store is down: the Reports API keeps serving without
PostgreSQL, and a request whose store is unreachable gets a 503 problem document within a
bounded time (SPEC §1, §3, §7)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from healthapp.domain.roles import Role
from tests.factories import ApiClient, TestUser, checkup_session
from tests.faults.conftest import healthapp_command
from tests.faults.servers import OwnedPostgres, OwnedRedis, wait_until
from tests.processes import REPORTS_APP, running_gunicorn

pytestmark = pytest.mark.slow

STORE_TIMEOUT_SECONDS = 1
#: The longest a request may take when its store is unreachable: the store timeout, plus
#: what a loaded 2-core machine adds to a request.
ANSWER_BOUND_SECONDS = STORE_TIMEOUT_SECONDS + 2


@pytest.fixture
def core_api(fault_database: str, owned_redis: OwnedRedis, tmp_path: Path) -> Iterator[str]:
    """The Core API as production runs it: its rate limits counted in Redis."""
    with running_gunicorn(
        fault_database,
        tmp_path / "core.log",
        REDIS_URL=owned_redis.url,
        RATELIMIT_ENABLED="1",
        UPLOAD_RATE_LIMIT_PER_ADDRESS="1000/minute",
        LOGIN_RATE_LIMIT_PER_ADDRESS="1000/minute",
        STORE_TIMEOUT_SECONDS=str(STORE_TIMEOUT_SECONDS),
        GUNICORN_THREADS="4",
    ) as base:
        yield base


@pytest.fixture
def reports_api(owned_redis: OwnedRedis, tmp_path: Path) -> Iterator[str]:
    with running_gunicorn(
        None,
        tmp_path / "reports.log",
        app=REPORTS_APP,
        REDIS_URL=owned_redis.url,
        STORE_TIMEOUT_SECONDS=str(STORE_TIMEOUT_SECONDS),
    ) as base:
        yield base


def timed(method: str, url: str, **kwargs: object) -> tuple[httpx.Response, float]:
    """The response and how long it took; no call waits past a generous client timeout."""
    started = time.monotonic()
    response = httpx.request(method, url, timeout=30, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, seconds: float) -> None:
    """A 503 problem document with ``Retry-After``, answered within the bound."""
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 503
    assert int(response.headers["Retry-After"]) > 0
    assert seconds < ANSWER_BOUND_SECONDS, f"{response.request.url} took {seconds:.2f} s"


def upload_and_sync(
    core: str, fault_api: ApiClient, database_url: str, redis_url: str, count: int
) -> tuple[TestUser, TestUser, list[dict[str, object]]]:
    """An operator uploads ``count`` check-ups for a new patient; one sync pass runs."""
    operator = fault_api.user(Role.OPERATOR)
    patient = fault_api.user()
    items = checkup_session(patient.id, fault_api.machine(), count)
    upload = httpx.post(
        f"{core}/api/v1/checkups/", json={"checkups": items}, headers=operator.headers, timeout=30
    )
    assert upload.status_code == 201, upload.text
    synced = healthapp_command("sync", database_url=database_url, redis_url=redis_url)
    assert synced.returncode == 0, synced.stderr
    return operator, patient, items


def test_postgresql_stopped_reports_serve_and_core_answers_503(
    owned_postgres: OwnedPostgres,
    owned_redis: OwnedRedis,
    fault_database: str,
    fault_api: ApiClient,
    core_api: str,
    reports_api: str,
    tmp_path: Path,
):
    operator, patient, items = upload_and_sync(
        core_api, fault_api, fault_database, owned_redis.url, 12
    )
    report_url = f"{reports_api}/api/v1/users/{patient.username}/"

    owned_postgres.stop()

    # The Reports API never opens PostgreSQL: every read path still answers.
    for url, headers in [
        (report_url, patient.headers),  # the stored first page
        (report_url, patient.headers),  # again, with the token already verified
        (f"{report_url}?checkup_type=heart_rate&limit=5", patient.headers),
        (f"{reports_api}/api/v1/users/", operator.headers),
    ]:
        response = httpx.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
    assert len(httpx.get(report_url, headers=patient.headers).json()["checkups"]) == 12
    assert httpx.get(f"{reports_api}/readyz", timeout=30).status_code == 200

    # The Core API answers every request that needs PostgreSQL with a 503 problem.
    more = checkup_session(patient.id, items[0]["machine_id"], 3, start_minute=100)  # type: ignore[arg-type]
    for method, path, kwargs in [
        ("GET", "/readyz", {}),
        ("GET", "/api/v1/checkups/", {"headers": operator.headers}),
        ("GET", f"/api/v1/users/{patient.id}", {"headers": patient.headers}),
        ("POST", "/api/v1/checkups/", {"headers": operator.headers, "json": {"checkups": more}}),
        (
            "POST",
            "/api/v1/auth/token",
            {"json": {"username": patient.username, "password": "correct-horse-battery"}},
        ),
    ]:
        assert_unavailable(*timed(method, f"{core_api}{path}", **kwargs))
    assert httpx.get(f"{core_api}/healthz", timeout=30).status_code == 200

    # Back up: the Core API recovers by itself and the refused upload goes through.
    owned_postgres.start()
    wait_until(
        lambda: httpx.get(f"{core_api}/readyz", timeout=30).status_code == 200,
        timeout=15,
        what="the Core API to be ready again",
    )
    retried = httpx.post(
        f"{core_api}/api/v1/checkups/",
        json={"checkups": more},
        headers=operator.headers,
        timeout=30,
    )
    assert retried.status_code == 201, retried.text
    log = (tmp_path / "core.log").read_text(errors="replace")
    assert "unhandled error" not in log, log[-3000:]


def test_redis_down_or_frozen_reports_answer_503_and_uploads_go_on(
    owned_redis: OwnedRedis,
    fault_database: str,
    fault_api: ApiClient,
    core_api: str,
    reports_api: str,
    tmp_path: Path,
):
    operator, patient, items = upload_and_sync(
        core_api, fault_api, fault_database, owned_redis.url, 5
    )
    sessions = iter(range(1, 10))
    report_url = f"{reports_api}/api/v1/users/{patient.username}/"
    assert httpx.get(report_url, headers=patient.headers, timeout=30).status_code == 200

    for outage, end_outage in [
        (owned_redis.kill, owned_redis.start),  # refused at once
        (owned_redis.freeze, owned_redis.thaw),  # accepted, never answered: the timeout
    ]:
        outage()
        try:
            for url in [report_url, f"{report_url}?limit=2", f"{reports_api}/readyz"]:
                assert_unavailable(*timed("GET", url, headers=patient.headers))
            assert httpx.get(f"{reports_api}/healthz", timeout=30).status_code == 200
            # The Core API's rate limits fail open, after one store timeout at most.
            more = checkup_session(
                patient.id,
                items[0]["machine_id"],  # type: ignore[arg-type]
                2,
                start_minute=100 * next(sessions),
            )
            response, seconds = timed(
                "POST",
                f"{core_api}/api/v1/checkups/",
                headers=operator.headers,
                json={"checkups": more},
            )
            assert response.status_code == 201, response.text
            assert seconds < ANSWER_BOUND_SECONDS, f"an upload took {seconds:.2f} s"
        finally:
            end_outage()
        wait_until(
            lambda: httpx.get(f"{reports_api}/readyz", timeout=30).status_code == 200,
            timeout=15,
            what="the Reports API to be ready again",
        )
    for name in ("reports.log", "core.log"):
        log = (tmp_path / name).read_text(errors="replace")
        assert "unhandled error" not in log, log[-3000:]
