"""Recording and listing audit events.

``record`` adds events to the caller's unit of work: they are stored by the caller's commit,
in the same transaction as the change they describe, or not at all. ``record_read`` records
a read, committed at once. The actor and the request id come from the request context
(``healthapp.request_context``), so services name only what happened and to whom.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from healthapp.audit.models import AuditEvent, Subject, event_row
from healthapp.audit.schemas import AuditEventListQuery
from healthapp.pagination_sql import paginate_by_time
from healthapp.request_context import Actor, current_actor, current_request_id
from healthapp.unit_of_work import unit_of_work

__all__ = ["Subject", "list_events", "record", "record_read"]


def record(
    *,
    session: Session,
    action: str,
    subjects: Iterable[Subject],
    actor: Actor | None = None,
) -> None:
    """Add one event per subject, in one statement, to the session's transaction."""
    actor = actor or current_actor()
    request_id = actor.request_id or current_request_id()
    rows = [
        event_row(actor=actor, action=action, subject=subject, request_id=request_id)
        for subject in subjects
    ]
    if rows:
        # Core executemany on the table: many subjects cost one round trip, no ORM objects.
        session.execute(insert(cast(Table, AuditEvent.__table__)), rows)


def record_read(*, session: Session, action: str, subjects: Iterable[Subject]) -> None:
    """Record a read of health data, committed now: a read has no change of its own to
    ride on. Called once the data is loaded and before it is returned, so that a read whose
    event cannot be stored fails (503) instead of going unrecorded."""
    with unit_of_work(session):
        record(session=session, action=action, subjects=subjects)


def list_events(
    *, session: Session, query: AuditEventListQuery
) -> tuple[Sequence[AuditEvent], str | None]:
    """A page of events, newest first, filtered as the query asks; the read is recorded.

    Its ``audit.read`` event names what was asked for: the subject is the username filtered
    on (none for the whole trail), ``details`` the other filters and how many events were
    shown. It is recorded even for an empty page, since asking is what it records, and
    committed before the page is returned (and after it was read: a page never shows its
    own read).
    """
    stmt = select(AuditEvent)
    if query.username is not None:
        stmt = stmt.where(AuditEvent.subject_username == query.username)
    if query.action is not None:
        stmt = stmt.where(AuditEvent.action == query.action)
    events, next_cursor = paginate_by_time(
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
    filters = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in (("action", query.action), ("from", query.from_), ("to", query.to))
        if value is not None
    }
    subject = Subject(None, query.username, {"listed": len(events), "filters": filters})
    record_read(session=session, action="audit.read", subjects=[subject])
    return events, next_cursor
