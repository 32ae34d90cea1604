"""Claiming outbox entries: which users a pass rebuilds, locked so that no other pass does.

Outbox rows are claimed with ``FOR UPDATE SKIP LOCKED``, and each claimed user with a
transaction-level advisory lock, so two workers never rebuild one user at the same time
(an older snapshot can never overwrite a newer document). The claimed rows are deleted in
the claiming transaction, after Redis was written: a crash before the commit leaves them
for the next pass.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Connection,
    Integer,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    extract,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION

from healthapp.models import ReportOutbox

#: First key of the per-user transaction locks (the second is the username's hash).
USER_LOCK_CLASS = 0x68617070

# A Table (the mapping types it as any FromClause): DELETE needs one.
_OUTBOX = typing.cast(Table, ReportOutbox.__table__)

_BACKLOG = select(
    func.count(),
    func.max(_OUTBOX.c.id),
    cast(
        extract("epoch", func.clock_timestamp() - func.min(_OUTBOX.c.enqueued_at)),
        DOUBLE_PRECISION,
    ),
)
_CLAIM = (
    select(_OUTBOX.c.id, _OUTBOX.c.user_id, _OUTBOX.c.username, _OUTBOX.c.request_id)
    .where(_OUTBOX.c.id <= bindparam("max_id"), ~(_OUTBOX.c.id == any_(bindparam("exclude"))))
    .order_by(_OUTBOX.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_NAME = func.unnest(cast(bindparam("names"), ARRAY(Text))).column_valued("name")
_LOCK_USERS = select(
    _NAME,
    # INTEGER: the (int, int) form of the lock, whose second key is hashtext's int.
    func.pg_try_advisory_xact_lock(
        bindparam("cls", USER_LOCK_CLASS, type_=Integer), func.hashtext(_NAME)
    ),
)
_DELETE = delete(_OUTBOX).where(_OUTBOX.c.id == any_(bindparam("ids")))


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One claimed outbox row."""

    id: int
    user_id: uuid.UUID
    username: str
    request_id: str | None = None


def outbox_backlog(*, conn: Connection) -> tuple[int, int | None, float | None]:
    """``(pending entries, newest id, age in seconds of the oldest)`` of the outbox."""
    count, max_id, lag = conn.execute(_BACKLOG).one()
    return int(count), max_id, lag


def claim_outbox_batch(
    *, conn: Connection, limit: int, max_id: int, exclude_ids: Sequence[int] = ()
) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
    """Lock up to ``limit`` outbox rows and their users: ``(claimed, left for later)``.

    Rows another worker holds are skipped; so are rows whose user another worker is
    rebuilding right now (they stay in the outbox for a later pass).
    """
    rows = conn.execute(
        _CLAIM, {"max_id": max_id, "exclude": list(exclude_ids), "limit": limit}
    ).all()
    entries = [
        OutboxEntry(id=r.id, user_id=r.user_id, username=r.username, request_id=r.request_id)
        for r in rows
    ]
    if not entries:
        return [], []
    names = sorted({entry.username for entry in entries})
    locked = {name for name, got in conn.execute(_LOCK_USERS, {"names": names}) if got}
    claimed = [entry for entry in entries if entry.username in locked]
    left = [entry for entry in entries if entry.username not in locked]
    return claimed, left


def delete_outbox_entries(*, conn: Connection, ids: Sequence[int]) -> None:
    """Delete exactly the claimed rows (newer rows for the same users stay)."""
    conn.execute(_DELETE, {"ids": list(ids)})
