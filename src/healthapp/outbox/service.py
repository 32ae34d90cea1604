"""Recording report changes in the outbox, inside the caller's transaction.

Each row carries the id of the request being answered (``None`` outside a request), so the
sync can log which requests caused the reports it rebuilds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, insert, literal, select
from sqlalchemy.orm import Session

from healthapp.accounts.models import User
from healthapp.checkups.models import Checkup
from healthapp.observability import bound_request_id
from healthapp.outbox.models import ReportOutbox


def enqueue_users(*, session: Session, users: Iterable[tuple[uuid.UUID, str]]) -> None:
    """Record that these ``(user_id, username)`` reports must be rebuilt; one row per user."""
    request_id = bound_request_id()
    rows = [
        {"user_id": uid, "username": name, "request_id": request_id}
        for uid, name in dict(users).items()
    ]
    if rows:
        session.execute(insert(ReportOutbox), rows)


def enqueue_user_ids(*, session: Session, user_ids: Iterable[uuid.UUID]) -> None:
    """Record these users (looked up by id) in the outbox with one set-based statement."""
    ids = list(set(user_ids))
    if not ids:
        return
    session.execute(
        insert(ReportOutbox).from_select(
            ["user_id", "username", "request_id"],
            select(User.id, User.username, _request_id_column()).where(User.id.in_(ids)),
        )
    )


def enqueue_machine_users(*, session: Session, machine_id: uuid.UUID) -> None:
    """Record every user with a check-up on ``machine_id`` (their reports show the machine)."""
    users_on_machine = select(User.id, User.username, _request_id_column()).where(
        User.id.in_(select(Checkup.user_id).where(Checkup.machine_id == machine_id))
    )
    session.execute(
        insert(ReportOutbox).from_select(["user_id", "username", "request_id"], users_on_machine)
    )


def _request_id_column() -> ColumnElement[str | None]:
    return literal(bound_request_id(), ReportOutbox.request_id.type)
