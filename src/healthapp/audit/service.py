"""Recording and listing audit events.

``record`` adds an event to the caller's unit of work: it is stored by the caller's commit,
in the same transaction as the change it describes, or not at all. The actor and the
request id come from the context (``healthapp.audit.context`` and the request's log
context), so services name only what happened and to whom.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from sqlalchemy import Table, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from healthapp.audit.context import Actor, current_actor
from healthapp.audit.models import AuditEvent
from healthapp.audit.schemas import AuditEventListQuery
from healthapp.pagination_sql import paginate_by_time

#: The only keys ``details`` may carry: counts, ids, field names and change kinds. A health
#: value, a password or a token has no key here, so it cannot be recorded by mistake.
DETAIL_KEYS = frozenset(
    {
        "change",
        "fields",
        "disease_id",
        "checkup_id",
        "created",
        "duplicates",
        "upload",
        "listed",
    }
)


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose data an event is about, with what happened to it in counts and ids."""

    id: uuid.UUID | None
    username: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


def current_request_id(actor: Actor) -> str | None:
    """The request id the actor carries, else the one bound to the log context."""
    if actor.request_id:
        return actor.request_id
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return str(request_id) if request_id else None


def record(
    *,
    session: Session,
    action: str,
    subject_id: uuid.UUID | None,
    subject_username: str | None,
    details: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> None:
    """Add one event to the session's transaction (stored by the caller's commit)."""
    record_each(
        session=session,
        action=action,
        subjects=[Subject(subject_id, subject_username, details or {})],
        actor=actor,
    )


def record_each(
    *,
    session: Session,
    action: str,
    subjects: Iterable[Subject],
    actor: Actor | None = None,
) -> None:
    """Add one event per subject, in one statement, to the session's transaction."""
    actor = actor or current_actor()
    request_id = current_request_id(actor)
    rows = [
        event_row(
            actor=actor,
            action=action,
            subject=subject,
            request_id=request_id,
        )
        for subject in subjects
    ]
    if rows:
        # Core executemany on the table: many subjects cost one round trip, no ORM objects.
        session.execute(insert(cast(Table, AuditEvent.__table__)), rows)


def record_reads(*, session: Session, action: str, subjects: Iterable[Subject]) -> None:
    """Record a read of health data, committed now: a read has no change of its own to
    ride on. Call it once the data is loaded and before it is sent, so that a read whose
    event cannot be stored fails (503) instead of going unrecorded."""
    try:
        record_each(session=session, action=action, subjects=subjects)
        session.commit()
    except BaseException:
        session.rollback()
        raise


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


def store_streamed(*, session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert events read from a stream; rows whose ``source_id`` is stored are skipped.

    Returns how many were new. The caller commits.
    """
    if not rows:
        return 0
    stmt = (
        pg_insert(AuditEvent)
        .on_conflict_do_nothing(index_elements=[AuditEvent.source_id])
        .returning(AuditEvent.id)
    )
    # Executemany: SQLAlchemy packs the rows into multi-row INSERTs of bounded size.
    return len(session.execute(stmt, list(rows)).all())


def list_events(
    *, session: Session, query: AuditEventListQuery
) -> tuple[Sequence[AuditEvent], str | None]:
    """A page of events, newest first, filtered as the query asks."""
    stmt = select(AuditEvent)
    if query.username is not None:
        stmt = stmt.where(AuditEvent.subject_username == query.username)
    if query.action is not None:
        stmt = stmt.where(AuditEvent.action == query.action)
    return paginate_by_time(
        session=session,
        stmt=stmt,
        time_column=AuditEvent.occurred_at,
        id_column=AuditEvent.id,
        limit=query.limit,
        cursor=query.cursor,
        newest_first=True,
        since=query.from_,
        until=query.to,
    )
