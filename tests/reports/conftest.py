"""Fixtures of the Reports API tests: the app on the test Redis, and a sync pass."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

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
