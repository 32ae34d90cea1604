"""Query and response models of the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from healthapp.audit.models import ACTION_PATTERN
from healthapp.pagination import PageQuery
from healthapp.schemas_common import Page, ResponseModel, TimeRange

Action = Annotated[str, StringConstraints(max_length=64, pattern=ACTION_PATTERN)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class AuditEventRead(ResponseModel):
    id: uuid.UUID
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor_username: str | None
    actor_role: str | None
    action: str
    subject_id: uuid.UUID | None
    subject_username: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditEventPage(Page[AuditEventRead]):
    pass


class AuditEventListQuery(PageQuery, TimeRange):
    """Filters of the audit trail; ``from`` is inclusive, ``to`` exclusive."""

    model_config = ConfigDict(extra="forbid")

    username: Username | None = Field(None, description="The subject: whose data.")
    action: Action | None = None
