"""Fixtures of the audit tests: the Reports API and the sync, as in the reports tests."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.conftest import truncate_all
from tests.reports.conftest import reports, reports_app, reports_settings, sync

__all__ = ["reports", "reports_app", "reports_settings", "sync"]


@pytest.fixture(autouse=True)
def _empty_tables_after(engine: Engine) -> Iterator[None]:
    """Tests here that write without the API client still leave no rows behind."""
    yield
    truncate_all(engine)
