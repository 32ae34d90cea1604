"""Roles and what each may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A user's role (SPEC §4)."""

    PATIENT = "patient"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def sees_everyone(self) -> bool:
        """Operators and admins read every user's data; patients only their own."""
        return self in (Role.OPERATOR, Role.ADMIN)
