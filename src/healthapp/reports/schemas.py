"""Query and response models of the Reports API (SPEC §7)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from healthapp.domain.checkup_types import CheckupTypeName
from healthapp.domain.profiles import BloodGroup, Sex
from healthapp.domain.report_render import FIRST_PAGE_SIZE
from healthapp.pagination import PageQuery
from healthapp.schemas_common import TimeRange

DEFAULT_CHECKUPS_PER_USER = 100
MAX_CHECKUPS_PER_USER = 1000


class ReportQuery(PageQuery, TimeRange):
    """Filters of one user's check-ups; ``from`` is inclusive, ``to`` exclusive."""

    model_config = ConfigDict(extra="forbid")

    checkup_type: CheckupTypeName | None = None

    def is_first_page(self) -> bool:
        """Whether this asks for the stored first page: no filter, no cursor, default size."""
        return (
            self.limit == FIRST_PAGE_SIZE
            and self.cursor is None
            and self.checkup_type is None
            and self.from_ is None
            and self.to is None
        )


class ReportListQuery(PageQuery):
    """A page of users, each with their newest ``checkups_per_user`` check-ups."""

    checkups_per_user: int = Field(DEFAULT_CHECKUPS_PER_USER, ge=0, le=MAX_CHECKUPS_PER_USER)


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ReportMachine(_Read):
    id: uuid.UUID
    machine_type: str | None
    manufacturer: str | None


class ReportCheckup(_Read):
    id: uuid.UUID
    checkup_type: str
    checkup: dict[str, Any] = Field(description="The check-up's ``information``.")
    machine: ReportMachine
    test_taken_by: str | None
    taken_at: datetime
    created_at: datetime


class ReportProfile(_Read):
    avatar: str | None
    blood_group: BloodGroup | None
    date_of_birth: date | None
    sex: Sex | None
    created_at: datetime
    updated_at: datetime


class ReportDisease(_Read):
    id: uuid.UUID
    name: str
    details: str | None
    diagnosed_on: date | None
    created_at: datetime


class TypeSummary(_Read):
    """A check-up type's figures over the whole history, of its primary value."""

    count: int
    latest: float | None
    min: float | None
    max: float | None


class ReportRead(_Read):
    """One user's report: a page of check-ups (newest first) and the whole summary."""

    username: str
    profile: ReportProfile | None
    diseases: list[ReportDisease]
    checkups: list[ReportCheckup]
    next_cursor: str | None
    summary: dict[str, TypeSummary]
    synced_at: datetime


class ListedCheckup(_Read):
    checkup: dict[str, Any]
    checkup_type: str
    created_at: datetime


class UserCheckups(_Read):
    checkups: list[ListedCheckup]
    checkup_count: int


class ReportListRead(_Read):
    """A page of users' reports, by username."""

    users: dict[str, UserCheckups]
    next_cursor: str | None
