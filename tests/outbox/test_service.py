"""The outbox records the users it is given, one row each, in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select

from healthapp.accounts.models import User
from healthapp.outbox.models import ReportOutbox
from healthapp.outbox.service import record_changed_users
from healthapp.request_context import set_request_id


def _users(session: Any, *names: str) -> dict[uuid.UUID, str]:
    users = {uuid.uuid4(): name for name in names}
    for user_id, name in users.items():
        session.add(User(id=user_id, username=name, email=f"{name}@example.com", password_hash="-"))
    session.commit()
    return users


def _rows(session: Any) -> list[tuple[uuid.UUID, str, str | None]]:
    stmt = select(ReportOutbox.user_id, ReportOutbox.username, ReportOutbox.request_id)
    return [tuple(row) for row in session.execute(stmt.order_by(ReportOutbox.id))]


@pytest.fixture
def in_request() -> Iterator[str]:
    """A request id bound as the web layer binds it for the request being answered."""
    set_request_id("req-outbox-1")
    yield "req-outbox-1"
    set_request_id(None)


def test_one_row_per_user_with_the_request_id(db_session: Any, in_request: str) -> None:
    users = _users(db_session, "ann", "bea", "cid")
    record_changed_users(session=db_session, users=users)
    db_session.commit()
    assert sorted(_rows(db_session)) == sorted(
        (user_id, name, in_request) for user_id, name in users.items()
    )


def test_outside_a_request_the_request_id_is_none(db_session: Any) -> None:
    users = _users(db_session, "ann")
    record_changed_users(session=db_session, users=users)
    db_session.commit()
    assert _rows(db_session) == [(*next(iter(users.items())), None)]


def test_no_users_write_nothing(db_session: Any, in_request: str) -> None:
    record_changed_users(session=db_session, users={})
    record_changed_users(
        session=db_session,
        users=select(User.id, User.username).where(User.username == "nobody"),
    )
    db_session.commit()
    assert _rows(db_session) == []


def test_a_select_records_the_users_it_finds_one_row_each(db_session: Any, in_request: str) -> None:
    users = _users(db_session, "ann", "bea", "cid")
    wanted = select(User.id, User.username).where(User.username.in_(["ann", "cid"]))
    record_changed_users(session=db_session, users=wanted)
    db_session.commit()
    expected = [(i, n, in_request) for i, n in users.items() if n in ("ann", "cid")]
    assert sorted(_rows(db_session)) == sorted(expected)


def test_the_rows_are_part_of_the_callers_transaction(db_session: Any) -> None:
    users = _users(db_session, "ann")
    record_changed_users(session=db_session, users=users)
    db_session.rollback()
    assert _rows(db_session) == []


def test_a_row_outlives_the_user_it_names(db_session: Any) -> None:
    users = _users(db_session, "ann")
    record_changed_users(session=db_session, users=users)
    db_session.execute(delete(User))
    db_session.commit()
    # The sync needs the name to remove the report of a user deleted since.
    assert [(user_id, name) for user_id, name, _ in _rows(db_session)] == list(users.items())


def test_each_change_is_recorded_again(db_session: Any) -> None:
    users = _users(db_session, "ann")
    record_changed_users(session=db_session, users=users)
    record_changed_users(session=db_session, users=users)
    db_session.commit()
    assert len(_rows(db_session)) == 2
