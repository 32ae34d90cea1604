"""Fixtures of the end-to-end tests: a sync pass, as in the reports tests."""

from tests.reports.conftest import sync

__all__ = ["sync"]
