"""What the check-ups domain does besides the upload (``healthapp.checkups.ingest``):
reading and deleting, each read recorded and each delete one unit of work.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import delete as sql_delete
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from healthapp.audit import service as audit
from healthapp.checkups.models import Checkup
from healthapp.checkups.schemas import CheckupListQuery
from healthapp.errors import NotFound
from healthapp.outbox.service import record_changed_users
from healthapp.pagination_sql import paginate_by_time
from healthapp.unit_of_work import unit_of_work

#: The usernames the audit events and outbox rows name, without loading the users' rows
#: (the upload uses the second too).
USERNAME_OF = text("SELECT username FROM users WHERE id = :id")
USERNAMES_OF = text("SELECT id, username FROM users WHERE id = ANY(:ids)")


def get(
    *, session: Session, checkup_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> Checkup | None:
    """The check-up ``checkup_id`` (only if it is ``user_id``'s, when given); its read is
    recorded."""
    checkup = session.get(Checkup, checkup_id)
    if checkup is None or (user_id is not None and checkup.user_id != user_id):
        return None
    audit.record_read(
        session=session,
        action="checkups.read",
        subjects=[
            audit.Subject(
                checkup.user_id,
                session.scalar(USERNAME_OF, {"id": checkup.user_id}),
                {"checkup_id": str(checkup.id)},
            )
        ],
    )
    return checkup


def list_checkups(
    *, session: Session, query: CheckupListQuery, user_id: uuid.UUID | None
) -> tuple[Sequence[Checkup], str | None]:
    """A page of check-ups, newest ``taken_at`` first, filtered as the query asks; its read
    is recorded.

    ``user_id`` (the query's or the caller's own, for patients) restricts to one user.
    """
    stmt = select(Checkup)
    if user_id is not None:
        stmt = stmt.where(Checkup.user_id == user_id)
    if query.checkup_type is not None:
        stmt = stmt.where(Checkup.checkup_type == query.checkup_type)
    rows, next_cursor = paginate_by_time(
        session=session,
        stmt=stmt,
        time_column=Checkup.taken_at,
        id_column=Checkup.id,
        limit=query.limit,
        cursor=query.cursor,
        newest_first=True,
        since=query.from_,
        until=query.to,
    )
    _record_list_read(session, user_id=user_id, rows=rows)
    return rows, next_cursor


def _record_list_read(
    session: Session, *, user_id: uuid.UUID | None, rows: Sequence[Checkup]
) -> None:
    """Record who was shown whose check-ups by a page of the list: the one user it was
    restricted to (even with no rows, if that user exists), else each user on the page,
    with their count."""
    listed = Counter(row.user_id for row in rows)
    if user_id is not None:
        listed = Counter({user_id: listed[user_id]})
    if not listed:
        return
    names = {row.id: row.username for row in session.execute(USERNAMES_OF, {"ids": list(listed)})}
    subjects = [
        audit.Subject(subject_id, names[subject_id], {"listed": count})
        for subject_id, count in listed.items()
        if subject_id in names
    ]
    if subjects:
        audit.record_read(session=session, action="checkups.read", subjects=subjects)


def delete(*, session: Session, checkup_id: uuid.UUID) -> None:
    """Delete a check-up; its user's report is queued for a rebuild in the same transaction."""
    with unit_of_work(session):
        checkup = session.get(Checkup, checkup_id)
        if checkup is None:
            raise NotFound("The check-up does not exist.")
        username = session.scalar(USERNAME_OF, {"id": checkup.user_id})
        record_changed_users(session=session, users={checkup.user_id: username})
        audit.record(
            session=session,
            action="checkup.delete",
            subjects=[audit.Subject(checkup.user_id, username, {"checkup_id": str(checkup.id)})],
        )
        session.execute(sql_delete(Checkup).where(Checkup.id == checkup.id))
