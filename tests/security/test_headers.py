"""Security headers, caching of health data, HSTS in production only, and CORS (both APIs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from healthapp.extensions import limiter
from tests.factories import ApiClient, synced_patient
from tests.security.apps import build_apps

ALLOWED = "https://app.myhealth.example"
OTHER = "https://evil.example"


@pytest.fixture
def apps(app: Any, database_url: str, redis_url: str, engine: Engine) -> Iterator[Any]:
    """Builds both APIs with chosen settings; the suite's app gets the limiter back after."""

    def build(**values: Any) -> tuple[Any, Any]:
        return build_apps(database_url=database_url, redis_url=redis_url, engine=engine, **values)

    yield build
    limiter.init_app(app)


@pytest.fixture
def synced(api: ApiClient, sync: Any) -> dict[str, Any]:
    """A patient whose report is in Redis; the paths of their data on each API."""
    patient, item = synced_patient(api, sync)
    return {
        "patient": patient,
        "core": f"/api/v1/checkups/{item['id']}",
        "reports": f"/api/v1/users/{patient.username}/",
    }


def _clients(core: Any, reports: Any) -> dict[str, Any]:
    return {"core": core.test_client(), "reports": reports.test_client()}


def _assert_hardened(response: Any) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "private, no-cache"


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_health_data_is_private_and_hardened(
    apps: Any, synced: dict[str, Any], redis_client: Any, api_name: str
) -> None:
    client = _clients(*apps())[api_name]
    patient = synced["patient"]
    response = client.get(synced[api_name], headers=patient.headers)
    assert response.status_code == 200, response.json
    _assert_hardened(response)
    assert "Strict-Transport-Security" not in response.headers  # not outside production
    # Errors about health data are no more cacheable than the data.
    _assert_hardened(client.get(synced[api_name]))


def test_reports_revalidate_with_etag_and_stay_private(
    apps: Any, synced: dict[str, Any], redis_client: Any
) -> None:
    client = _clients(*apps())["reports"]
    headers = synced["patient"].headers
    first = client.get(synced["reports"], headers=headers)
    etag = first.headers["ETag"]
    again = client.get(synced["reports"], headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag
    _assert_hardened(again)
    stale = client.get(synced["reports"], headers={**headers, "If-None-Match": '"other"'})
    assert stale.status_code == 200


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_hsts_only_in_production(
    apps: Any, synced: dict[str, Any], redis_client: Any, api_name: str
) -> None:
    client = _clients(*apps(production=True))[api_name]
    response = client.get("/healthz")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert int(response.headers["Strict-Transport-Security"].split("=")[1].split(";")[0]) >= (
        365 * 24 * 3600
    )
    data = client.get(synced[api_name], headers=synced["patient"].headers)
    assert data.status_code == 200
    assert "Strict-Transport-Security" in data.headers
    testing = _clients(*apps())[api_name].get("/healthz")
    assert "Strict-Transport-Security" not in testing.headers


# CORS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_cors_answers_only_the_configured_origins(
    apps: Any, synced: dict[str, Any], redis_client: Any, api_name: str
) -> None:
    client = _clients(*apps(CORS_ORIGINS=[ALLOWED]))[api_name]
    path, patient = synced[api_name], synced["patient"]
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization",
    }
    allowed = client.options(path, headers={"Origin": ALLOWED, **preflight})
    assert allowed.status_code < 300
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    simple = client.get(path, headers={"Origin": ALLOWED, **patient.headers})
    assert simple.status_code == 200
    assert simple.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "ETag" in simple.headers.get("Access-Control-Expose-Headers", "")
    for response in (
        client.options(path, headers={"Origin": OTHER, **preflight}),
        client.get(path, headers={"Origin": OTHER, **patient.headers}),
    ):
        assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("api_name", ["core", "reports"])
def test_no_cors_without_configured_origins(
    apps: Any, synced: dict[str, Any], redis_client: Any, api_name: str
) -> None:
    client = _clients(*apps(CORS_ORIGINS=[]))[api_name]
    response = client.get(
        synced[api_name], headers={"Origin": ALLOWED, **synced["patient"].headers}
    )
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
