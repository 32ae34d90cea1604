"""The ``?limit=&cursor=`` query of every list and its opaque keyset cursors (SPEC §3).

Pure: the Reports API reads its cursors with this module and loads no database code; the
SQL side of a keyset page is :mod:`healthapp.pagination_sql`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from healthapp.domain.cursors import encode_cursor as encode_cursor
from healthapp.errors import InvalidCursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class PageQuery(BaseModel):
    """``?limit=`` and ``?cursor=``."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=512)


def decode_cursor(cursor: str, *, arity: int) -> list[Any]:
    """The keyset position in ``cursor``; a tampered cursor raises :class:`InvalidCursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidCursor()
    return key


def decode_time_id_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A ``(timestamp, id)`` keyset position."""
    moment, row_id = decode_cursor(cursor, arity=2)
    if not isinstance(moment, str) or not isinstance(row_id, str):
        raise InvalidCursor()
    try:
        return datetime.fromisoformat(moment), uuid.UUID(row_id)
    except ValueError as exc:
        raise InvalidCursor() from exc


def encode_time_id_cursor(moment: datetime, row_id: uuid.UUID) -> str:
    """The cursor of the ``(timestamp, id)`` keyset position :func:`decode_time_id_cursor` reads."""
    return encode_cursor([moment.isoformat(), str(row_id)])
