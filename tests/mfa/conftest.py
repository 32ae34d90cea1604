"""Fixtures of the second-factor tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def mfa_required(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``STAFF_MFA_REQUIRED`` on, as in production."""
    monkeypatch.setitem(app.config, "STAFF_MFA_REQUIRED", True)
