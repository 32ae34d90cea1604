"""Fixtures of the Reports API tests: the app on the test Redis, a sync pass, and its
metrics as Prometheus reads them (with the metrics token)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from pydantic import SecretStr

from healthapp.config import Testing
from healthapp.reports.app import create_app
from healthapp.sync.passes import run_incremental_sync
from healthapp.sync.stats import SyncStats


@pytest.fixture(scope="session")
def reports_settings(database_url: str, redis_url: str) -> Testing:
    settings = Testing()
    settings.DATABASE_URL = None  # the Reports API has no use for it
    settings.REDIS_URL = redis_url
    settings.STORE_TIMEOUT_SECONDS = 1
    return settings


@pytest.fixture(scope="session")
def reports_app(reports_settings: Testing) -> Any:
    return create_app(reports_settings)


@pytest.fixture
def reports(reports_app: Any, redis_client: redis.Redis) -> FlaskClient:
    """A test client of the Reports API over an emptied Redis."""
    client: FlaskClient = reports_app.test_client()
    return client


@pytest.fixture
def sync(engine: Any, redis_client: redis.Redis) -> Any:
    def run() -> SyncStats:
        return run_incremental_sync(engine=engine, redis_client=redis_client)

    return run


#: The metrics token of the Reports API whose metrics the tests read (made up).
METRICS_TOKEN = "metrics-token-of-the-tests-" + "m" * 16


@pytest.fixture(scope="session")
def metrics_app(reports_settings: Testing) -> Any:
    """A Reports API that serves its metrics to ``METRICS_TOKEN``; its figures are the
    process's, so they count what every Reports API of the test process answered."""
    return create_app(
        reports_settings.model_copy(update={"METRICS_TOKEN": SecretStr(METRICS_TOKEN)})
    )


@pytest.fixture
def scrape(metrics_app: Any, redis_client: redis.Redis) -> Callable[..., str]:
    """The text of a metrics page (default ``/metrics``), read with the metrics token."""
    client = metrics_app.test_client()

    def read(path: str = "/metrics") -> str:
        response = client.get(path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return str(response.get_data(as_text=True))

    return read
