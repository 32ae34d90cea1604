"""Recording report changes in the outbox, inside the caller's transaction.

Every writer records here, and only here, which users' reports its change makes stale.
Each row carries the id of the request being answered (``None`` outside a request), so the
sync can log which requests caused the reports it rebuilds. The outbox knows no other
table: the writer names the users, with their usernames (the sync needs the name to remove
the report of a user deleted since).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import Select, String, Uuid, func, insert, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from healthapp.outbox.models import ReportOutbox
from healthapp.request_context import current_request_id

_COLUMNS = ("user_id", "username", "request_id")


def record_changed_users(
    *, session: Session, users: Mapping[uuid.UUID, str] | Select[uuid.UUID, str]
) -> None:
    """Record that these users' reports must be rebuilt: one outbox row per user, in one
    ``INSERT … SELECT`` on the caller's transaction.

    ``users`` maps user ids to usernames, or is a select of ``(user id, username)`` rows,
    one per user, for a set only the database knows (the users of a machine), so that it
    is never fetched first.
    """
    if not isinstance(users, Select):
        if not users:
            return
        # Both arrays in one statement: one round trip and one cached plan for any count.
        users = select(
            func.unnest(literal(list(users), ARRAY(Uuid))),
            func.unnest(literal(list(users.values()), ARRAY(String))),
        )
    rows = users.add_columns(literal(current_request_id(), ReportOutbox.request_id.type))
    session.execute(insert(ReportOutbox).from_select(_COLUMNS, rows))
