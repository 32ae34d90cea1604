"""Opaque keyset cursors and the ``?limit=&cursor=`` query of every list (SPEC §3)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from healthapp.domain.cursors import encode_cursor as encode_cursor
from healthapp.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

T = TypeVar("T")


class PageQuery(BaseModel):
    """``?limit=`` and ``?cursor=``."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=512)


def decode_cursor(cursor: str, *, arity: int) -> list[Any]:
    """The keyset position in ``cursor``; a tampered cursor is a 400 problem."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise bad_cursor() from exc
    if not isinstance(key, list) or len(key) != arity:
        raise bad_cursor()
    return key


def decode_time_id_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A ``(timestamp, id)`` keyset position."""
    moment, row_id = decode_cursor(cursor, arity=2)
    if not isinstance(moment, str) or not isinstance(row_id, str):
        raise bad_cursor()
    try:
        return datetime.fromisoformat(moment), uuid.UUID(row_id)
    except ValueError as exc:
        raise bad_cursor() from exc


def bad_cursor() -> Problem:
    """The 400 answered for a cursor this server did not issue."""
    return Problem(
        400,
        "The cursor is not valid; start again without one.",
        errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
    )


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
    moment = getattr(last, time_column.key)
    return rows, encode_cursor([moment.isoformat(), str(getattr(last, id_column.key))])
