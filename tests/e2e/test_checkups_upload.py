"""End to end: the Core API under gunicorn, as production runs it, on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, text

from healthapp.domain.roles import Role
from tests.factories import ApiClient, checkup_session
from tests.processes import MAX_CONTENT_LENGTH, running_gunicorn

pytestmark = pytest.mark.slow


@pytest.fixture
def gunicorn_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with running_gunicorn(database_url, tmp_path / "gunicorn.log") as base:
        yield base


def _stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM checkups")).scalar_one())


def _post(base: str, token: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/checkups/",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **headers,
        },
        timeout=60,
    )


def test_a_ten_thousand_item_session_through_gunicorn(
    gunicorn_url: str, api: ApiClient, engine: Engine
) -> None:
    operator = api.user(Role.OPERATOR)
    patient = api.user()
    items = checkup_session(patient.id, api.machine(), 10_000)
    body = orjson.dumps({"checkups": items})
    assert len(body) < MAX_CONTENT_LENGTH

    first = _post(gunicorn_url, operator.access_token, body)
    assert first.status_code == 201, first.text
    assert first.json() == {"created": 10_000, "duplicates": 0}
    again = _post(gunicorn_url, operator.access_token, body)
    assert again.status_code == 200
    assert again.json() == {"created": 0, "duplicates": 10_000}
    assert _stored(engine) == 10_000


def test_problems_through_gunicorn(gunicorn_url: str, api: ApiClient, engine: Engine) -> None:
    operator = api.user(Role.OPERATOR)
    patient = api.user()
    machine = api.machine()

    too_large = orjson.dumps({"checkups": checkup_session(patient.id, machine, 20_000)})
    assert len(too_large) > MAX_CONTENT_LENGTH
    response = _post(gunicorn_url, operator.access_token, too_large)
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 413

    cases: list[tuple[bytes, dict[str, Any], int]] = [
        (b'{"checkups": [', {}, 400),
        (b"checkups", {"Content-Type": "text/plain"}, 415),
        (b'{"checkups": [{}]}', {}, 422),
    ]
    for body, headers, status in cases:
        response = _post(gunicorn_url, operator.access_token, body, **headers)
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
    assert _stored(engine) == 0


def test_uploads_are_rate_limited_per_address(
    database_url: str, tmp_path: Path, api: ApiClient
) -> None:
    operator = api.user(Role.OPERATOR)
    body = orjson.dumps({"checkups": []})
    with running_gunicorn(
        database_url,
        tmp_path / "gunicorn.log",
        RATELIMIT_ENABLED="1",
        UPLOAD_RATE_LIMIT_PER_ADDRESS="3/minute",
    ) as base:
        answers = [_post(base, operator.access_token, body) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) > 0
