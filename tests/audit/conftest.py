"""Fixtures of the audit tests: the Reports API and the sync, as in the reports tests."""

from tests.reports.conftest import reports, reports_app, reports_settings, sync

__all__ = ["reports", "reports_app", "reports_settings", "sync"]
