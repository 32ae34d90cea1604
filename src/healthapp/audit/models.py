"""The audit table: one row per read or change of someone's health data, and the shape of a row."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, String, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from healthapp.orm import Base
from healthapp.request_context import Actor

#: What an action looks like: dotted lower-case words (``report.read``).
ACTION_PATTERN = r"^[a-z_]+(\.[a-z_]+)+$"

#: The only keys ``details`` may carry: counts, ids, field names, change kinds, the client
#: address of a login, why tokens were revoked, a new account's role and the filters a read
#: of the trail asked for. A health value, a password or a token has no key here, so it
#: cannot be recorded by mistake.
DETAIL_KEYS = frozenset(
    {
        "address",
        "change",
        "fields",
        "disease_id",
        "checkup_id",
        "created",
        "duplicates",
        "upload",
        "listed",
        "reason",
        "sessions",
        "role",
        "filters",
    }
)


class AuditEvent(Base):
    """Who did what to whose health data, and when; append-only (see migration 0002).

    No foreign key to ``users``: an event must outlive both the actor and the subject, so
    both are kept by value (id and username). ``details`` holds counts and identifiers,
    never a health value, a password or a token.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(f"action ~ '{ACTION_PATTERN}'", name="action_format"),
        # One subject's events newest first, optionally within a time range.
        Index(
            "ix_audit_events_subject_occurred",
            "subject_username",
            text("occurred_at DESC"),
            text("id DESC"),
        ),
        # One action's events newest first (?action=): every read records events, so a
        # rare action is otherwise found by walking the whole trail.
        Index(
            "ix_audit_events_action_occurred",
            "action",
            text("occurred_at DESC"),
            text("id DESC"),
        ),
        # Every event newest first (the unfiltered list, time ranges).
        Index("ix_audit_events_occurred", text("occurred_at DESC"), text("id DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    actor_username: Mapped[str | None] = mapped_column(String(64))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    subject_username: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: Where a streamed event came from (its stream entry), so a replay inserts nothing.
    source_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), default=dict
    )


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose data an event is about, with what happened to it in counts and ids."""

    id: uuid.UUID | None
    username: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


def event_row(
    *,
    actor: Actor,
    action: str,
    subject: Subject,
    request_id: str | None,
    source_id: str | None = None,
    occurred_at: Any = None,
) -> dict[str, Any]:
    """The column values of one event; unknown ``details`` keys are a programming error."""
    unknown = set(subject.details) - DETAIL_KEYS
    if unknown:
        raise ValueError(f"audit details may not carry {sorted(unknown)}")
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "actor_id": actor.id,
        "actor_username": actor.username,
        "actor_role": actor.role,
        "action": action,
        "subject_id": subject.id,
        "subject_username": subject.username,
        "request_id": request_id,
        "source_id": source_id,
        "details": dict(subject.details),
    }
    if occurred_at is not None:
        row["occurred_at"] = occurred_at
    return row
