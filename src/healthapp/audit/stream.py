"""Report reads travel to the audit table through a Redis stream.

The Reports API never opens PostgreSQL and answers in milliseconds, so a read is recorded
with one ``XADD`` to ``audit:report-reads``; the worker drains the stream into
``audit_events``. The stream is bounded (approximately ``AUDIT_STREAM_MAXLEN`` entries, about
130 bytes each) so a worker that stays down cannot fill Redis; within that bound nothing is
lost.

Draining is at-least-once on the Redis side and exactly-once in the table: a batch is read
with ``XRANGE``, inserted with ``ON CONFLICT (source_id) DO NOTHING`` (``source_id`` is the
stream entry id), committed, and only then deleted with ``XDEL``. A crash after the commit
leaves the entries in the stream; the next drain inserts nothing for them and deletes them.

This module is imported by the Reports API, which must load no table and no database
driver: the draining side, which only the worker and the CLI run, imports the audit table
(``healthapp.audit.models``) and SQLAlchemy inside the functions that use them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import redis
import structlog

from healthapp.errors import Unavailable
from healthapp.extensions import run_command
from healthapp.request_context import Actor

if TYPE_CHECKING:
    from sqlalchemy import Engine

STREAM_KEY = "audit:report-reads"
#: Roughly how many reads the stream keeps while nobody drains it (the setting's default).
STREAM_MAXLEN = 1_000_000
#: Entries one drain transaction takes.
DRAIN_BATCH_SIZE = 500
#: Batches one drain call takes at most, so a task under constant load still ends.
DRAIN_MAX_BATCHES = 100

ACTION_REPORT_READ = "report.read"
ACTION_REPORT_LIST = "report.list"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_log = structlog.get_logger(__name__)


def publish_report_read(
    client: redis.Redis,
    actor: Actor,
    username: str,
    request_id: str | None,
    *,
    maxlen: int = STREAM_MAXLEN,
    lean: bool = False,
) -> None:
    """Record that ``actor`` read ``username``'s report: one ``XADD``.

    ``lean`` sends it as one bare command (``run_command``: no retry), for a caller that
    falls back to the full path on any error.
    """
    _publish(client, actor, ACTION_REPORT_READ, [username], request_id, maxlen, lean=lean)


def publish_report_list_read(
    client: redis.Redis,
    actor: Actor,
    usernames: Sequence[str],
    request_id: str | None,
    *,
    maxlen: int = STREAM_MAXLEN,
) -> None:
    """Record that ``actor`` read a page of reports: one ``XADD`` naming every user on it.

    The drain stores one event per listed user, so each user's trail shows the read.
    """
    if usernames:
        _publish(client, actor, ACTION_REPORT_LIST, usernames, request_id, maxlen)


def _publish(
    client: redis.Redis,
    actor: Actor,
    action: str,
    usernames: Sequence[str],
    request_id: str | None,
    maxlen: int,
    *,
    lean: bool = False,
) -> None:
    command = (
        *("XADD", STREAM_KEY, "MAXLEN", "~", maxlen, "*"),
        "action",
        action,
        # Usernames are [a-z0-9._-]: a comma cannot be part of one.
        "subjects",
        ",".join(usernames),
        "actor_id",
        str(actor.id) if actor.id else "",
        "actor_username",
        actor.username,
        "actor_role",
        actor.role,
        "request_id",
        request_id or "",
        "at",
        time.time_ns() // 1000,
    )
    try:
        if lean:
            run_command(client, *command)
        else:
            client.execute_command(*command)
    except redis.ResponseError as error:
        # Redis refused the write (out of memory, say): a read that cannot be recorded is
        # not served, like any other store failure.
        _log.warning("audit stream refused a report read", error=type(error).__name__)
        raise Unavailable("A backing store is unreachable; retry shortly.") from None


def rows_of_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> list[dict[str, Any]]:
    """The audit rows of one stream entry (one per subject); none for a malformed entry."""
    from healthapp.audit.models import Subject, event_row

    source = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    try:
        values = {key.decode(): value.decode() for key, value in fields.items()}
        action = values["action"]
        subjects = [name for name in values["subjects"].split(",") if name]
        actor = Actor(
            id=uuid.UUID(values["actor_id"]) if values["actor_id"] else None,
            username=values["actor_username"] or "anonymous",
            role=values["actor_role"] or "anonymous",
        )
        occurred_at = _EPOCH + timedelta(microseconds=int(values["at"]))
    except (KeyError, ValueError, UnicodeDecodeError):
        _log.warning("audit stream entry malformed; skipped", entry_id=source)
        return []
    if action not in (ACTION_REPORT_READ, ACTION_REPORT_LIST):
        _log.warning("audit stream entry of unknown action; skipped", entry_id=source)
        return []
    listed = {"listed": len(subjects)} if action == ACTION_REPORT_LIST else {}
    return [
        event_row(
            actor=actor,
            action=action,
            subject=Subject(id=None, username=name, details=listed),
            request_id=values["request_id"] or None,
            # One entry, one id per subject: a replay of the entry finds them all stored.
            source_id=source if len(subjects) == 1 else f"{source}/{index}",
            occurred_at=occurred_at,
        )
        for index, name in enumerate(subjects)
    ]


def store_entries(engine: Engine, entries: Sequence[tuple[Any, dict[bytes, bytes]]]) -> int:
    """Insert the events of ``entries`` in one transaction; entries stored before add nothing.

    Returns how many events were new.
    """
    from sqlalchemy.dialects.postgresql import insert
    from sqlalchemy.orm import Session

    from healthapp.audit.models import AuditEvent
    from healthapp.unit_of_work import unit_of_work

    rows = [row for entry_id, fields in entries for row in rows_of_entry(entry_id, fields)]
    if not rows:
        return 0
    # A row whose ``source_id`` is stored was drained before (a crash before the XDEL).
    stmt = (
        insert(AuditEvent)
        .on_conflict_do_nothing(index_elements=[AuditEvent.source_id])
        .returning(AuditEvent.id)
    )
    with Session(engine) as session, unit_of_work(session):
        # Executemany: SQLAlchemy packs the rows into multi-row INSERTs of bounded size.
        return len(session.execute(stmt, rows).all())


def drain_read_events(
    client: redis.Redis,
    engine: Engine,
    *,
    batch_size: int = DRAIN_BATCH_SIZE,
    max_batches: int = DRAIN_MAX_BATCHES,
) -> int:
    """Move the stream's entries into ``audit_events``; how many events were stored.

    Each batch: ``XRANGE`` → insert (``ON CONFLICT DO NOTHING``) → commit → ``XDEL``.
    """
    stored = 0
    for _ in range(max_batches):
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            client.xrange(STREAM_KEY, "-", "+", count=batch_size),
        )
        if not entries:
            break
        stored += store_entries(engine, entries)
        client.xdel(STREAM_KEY, *[entry_id for entry_id, _fields in entries])
        if len(entries) < batch_size:
            break
    if stored:
        _log.info("audit stream drained", events_stored=stored)
    return stored
