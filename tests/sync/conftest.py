"""Fixtures of the sync tests: the suite's PostgreSQL and an emptied Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from healthapp.reports.store import CheckupFilter, ReportPage, ReportStore
from healthapp.sync.passes import run_incremental_sync
from healthapp.sync.stats import SyncStats


@pytest.fixture
def store(redis_client: redis.Redis) -> ReportStore:
    """The read side over the test Redis."""
    return ReportStore(redis_client)


@pytest.fixture
def sync(engine: Any, redis_client: redis.Redis) -> Any:
    """Run one incremental pass against the test database and Redis."""

    def run(**kwargs: Any) -> SyncStats:
        return run_incremental_sync(engine=engine, redis_client=redis_client, **kwargs)

    return run


def read_all(store: ReportStore, username: str, **filters: Any) -> ReportPage | None:
    """A user's report with every check-up on one page."""
    return store.get_report(username, filters=CheckupFilter(**filters), limit=100_000)
