"""Keyset pages of a SQL query: the PostgreSQL side of :mod:`healthapp.pagination`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from healthapp.pagination import decode_time_id_cursor, encode_time_id_cursor

T = TypeVar("T")


def paginate_by_time(
    *,
    session: Session,
    stmt: Select[T],
    time_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[uuid.UUID],
    limit: int,
    cursor: str | None,
    newest_first: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Sequence[T], str | None]:
    """One page of ``stmt`` ordered by ``(time, id)``, and the cursor of the next page;
    ``since`` (inclusive) and ``until`` (exclusive) bound the time column."""
    if since is not None:
        stmt = stmt.where(time_column >= since)
    if until is not None:
        stmt = stmt.where(time_column < until)
    key = tuple_(time_column, id_column)
    if cursor:
        position = tuple_(*decode_time_id_cursor(cursor))
        stmt = stmt.where(key < position if newest_first else key > position)
    if newest_first:
        stmt = stmt.order_by(time_column.desc(), id_column.desc())
    else:
        stmt = stmt.order_by(time_column, id_column)
    rows = session.scalars(stmt.limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_time_id_cursor(getattr(last, time_column.key), getattr(last, id_column.key))
