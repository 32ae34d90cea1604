"""Fixtures of the security tests: the Reports API fixtures, shared with its own tests."""

from tests.reports.conftest import reports, reports_app, reports_settings, sync

__all__ = ["reports", "reports_app", "reports_settings", "sync"]
