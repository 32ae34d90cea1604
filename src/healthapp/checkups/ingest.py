"""The bulk upload of check-ups (SPEC §6): one unit of work per upload, committed once.

The upload is set-based and takes one of two paths, in one transaction either way:

- New ids only (a session's first upload, the common case): the rows are copied (binary
  ``COPY``) straight into ``checkups``, which costs PostgreSQL what ``psql \\copy`` costs
  it. If an id is stored already (a retry) or by a concurrent upload, the ``COPY`` fails on
  the primary key, is rolled back to its savepoint, and the upload takes the second path.
- Some ids seen before (a retry): the rows are copied into a temporary staging table, then
  one ``INSERT … SELECT … ON CONFLICT (id) DO NOTHING`` stores the new ones (waiting on
  concurrent uploads of the same ids instead of failing) and one more query compares the
  rest with what is stored, to tell duplicates from conflicts.

Both then queue the report rebuild of every user that got a new check-up, one outbox row
per user, and record one ``checkups.upload`` audit event per such user, in the same
transaction. An item naming a retired machine (``"active": false``) is refused: a retired
machine takes no new check-ups (SPEC §5).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from sqlalchemy import text
from sqlalchemy.orm import Session

from healthapp.audit import service as audit
from healthapp.checkups.schemas import (
    BulkParse,
    CheckupCreateBase,
    item_error,
    sort_errors,
)
from healthapp.checkups.service import USERNAMES_OF
from healthapp.errors import Conflict, InvalidInput, Unavailable
from healthapp.outbox.service import record_changed_users
from healthapp.unit_of_work import unit_of_work

_STAGING_TABLE = """
CREATE TEMPORARY TABLE checkup_staging (
    ord integer NOT NULL,
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    machine_id uuid NOT NULL,
    checkup_type text NOT NULL,
    information jsonb NOT NULL,
    test_taken_by text,
    taken_at timestamptz NOT NULL
) ON COMMIT DROP
"""

_COPY_STAGING = (
    "COPY checkup_staging (ord, id, user_id, machine_id, checkup_type, information,"
    " test_taken_by, taken_at) FROM STDIN (FORMAT BINARY)"
)
_STAGING_TYPES = ["int4", "uuid", "uuid", "uuid", "text", "jsonb", "text", "timestamptz"]

# New rows are stored, and counted per user, in one statement. Rows go in id order, so
# concurrent uploads sharing ids wait on each other in the same order and never deadlock;
# of one id sent twice, the first item is the one stored.
_INSERT_NEW = text("""
WITH inserted AS (
    INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,
                          test_taken_by, taken_at, uploaded_by)
    SELECT id, user_id, machine_id, checkup_type, information,
           test_taken_by, taken_at, :uploaded_by
    FROM checkup_staging
    ORDER BY id, ord
    ON CONFLICT (id) DO NOTHING
    RETURNING user_id
)
SELECT user_id, count(*) FROM inserted GROUP BY user_id
""")

# Staged items whose id is stored with other content (ids seen twice in one upload too).
_CONFLICTS = text("""
SELECT s.ord FROM checkup_staging s JOIN checkups c ON c.id = s.id
WHERE (c.user_id, c.machine_id, c.checkup_type, c.information, c.test_taken_by, c.taken_at)
      IS DISTINCT FROM
      (s.user_id, s.machine_id, s.checkup_type, s.information, s.test_taken_by, s.taken_at)
ORDER BY s.ord
""")

_COPY_CHECKUPS = (
    "COPY checkups (id, user_id, machine_id, checkup_type, information, test_taken_by,"
    " taken_at, uploaded_by) FROM STDIN (FORMAT BINARY)"
)
_CHECKUP_TYPES = ["uuid", "uuid", "uuid", "text", "jsonb", "text", "timestamptz", "uuid"]

_NO_JIT = text("SET LOCAL jit = off")
_STORED_IDS = text("SELECT id FROM checkups WHERE id = ANY(:ids)")
_EXISTING_MACHINES = text("SELECT id, active FROM machines WHERE id = ANY(:ids)")

_NOT_YOURS = "a patient may upload check-ups only for themself"
_UNKNOWN_USER = "no user has this id"
_UNKNOWN_MACHINE = "no machine has this id"
_RETIRED_MACHINE = "this machine is retired and takes no new check-ups"
_CONFLICT = "a check-up with this id is already stored with different content"


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What an upload did: new rows, rows already stored, and the items turned away."""

    created: int
    duplicates: int
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """How many items were not stored (an item may carry several errors)."""
        return len({error["loc"][1] for error in self.errors})


def ingest_checkups(
    *,
    session: Session,
    parsed: BulkParse,
    uploaded_by: uuid.UUID,
    only_user_id: uuid.UUID | None,
    atomic: bool,
) -> IngestOutcome:
    """Store an upload's new check-ups in one transaction; nothing half-lands.

    ``atomic``: any invalid item is a 422 and any id stored with other content a 409, and
    nothing is stored. Otherwise (batch mode) the valid items are stored and the others
    reported. ``only_user_id`` limits the upload to that user's check-ups (patients).
    """
    errors = list(parsed.errors)
    items = parsed.valid
    if only_user_id is not None:
        items = _keep_own(items, only_user_id, errors)
    # A user or machine deleted between the check below and the insert breaks a foreign
    # key: the unit of work answers that as a conflict, and the upload can be retried.
    with unit_of_work(session):
        # Each statement here is short; compiling one (PostgreSQL's JIT) costs more than it.
        session.execute(_NO_JIT)
        items, usernames = _keep_usable(session, items, errors)
        if errors and atomic:
            raise InvalidInput(
                f"{_count_items(errors)} of {parsed.total} check-ups are invalid; "
                "nothing was stored.",
                errors=sort_errors(errors),
            )
        if not items:
            return IngestOutcome(created=0, duplicates=0, errors=sort_errors(errors))
        if _copy_if_all_new(session, items, uploaded_by):
            created_per_user = Counter(item.user_id for _, item in items)
            conflicts = []
        else:
            created_per_user = _insert_new(session, items, uploaded_by)
            new = sum(created_per_user.values())
            conflicts = _conflicting_items(session) if new < len(items) else []
        created = sum(created_per_user.values())
        if conflicts and atomic:
            raise Conflict(
                f"{len(conflicts)} check-up ids are already stored with different content "
                f"(items {_list_indices(conflicts)}); nothing was stored.",
                errors=[item_error(i, "id", _CONFLICT, "conflict") for i in conflicts],
            )
        record_changed_users(
            session=session, users={user_id: usernames[user_id] for user_id in created_per_user}
        )
        _audit_upload(
            session,
            items=items,
            usernames=usernames,
            created_per_user=created_per_user,
            conflicts=conflicts,
            upload={
                "items": parsed.total,
                "created": created,
                "duplicates": len(items) - created - len(conflicts),
                "rejected": len({error["loc"][1] for error in errors} | set(conflicts)),
            },
        )
    errors.extend(item_error(i, "id", _CONFLICT, "conflict") for i in conflicts)
    return IngestOutcome(
        created=created,
        duplicates=len(items) - created - len(conflicts),
        errors=sort_errors(errors),
    )


def _keep_own(
    items: list[tuple[int, CheckupCreateBase]],
    user_id: uuid.UUID,
    errors: list[dict[str, Any]],
) -> list[tuple[int, CheckupCreateBase]]:
    kept = []
    for index, item in items:
        if item.user_id == user_id:
            kept.append((index, item))
        else:
            errors.append(item_error(index, "user_id", _NOT_YOURS, "not_own_user"))
    return kept


def _keep_usable(
    session: Session,
    items: list[tuple[int, CheckupCreateBase]],
    errors: list[dict[str, Any]],
) -> tuple[list[tuple[int, CheckupCreateBase]], dict[uuid.UUID, str]]:
    """The items whose user exists and whose machine exists and is in service (or took the
    item before it was retired), and the users' names; one query for the users, one for the
    machines, and one more only when an item names a retired machine."""
    if not items:
        return items, {}
    user_ids = list({item.user_id for _, item in items})
    machine_ids = list({item.machine_id for _, item in items})
    users: dict[uuid.UUID, str] = dict(session.execute(USERNAMES_OF, {"ids": user_ids}).all())
    active: dict[uuid.UUID, bool] = dict(
        session.execute(_EXISTING_MACHINES, {"ids": machine_ids}).all()
    )
    if len(users) == len(user_ids) and len(active) == len(machine_ids) and all(active.values()):
        return items, users
    # A retired machine takes no new check-ups, but a resend of one it took before is still
    # the duplicate it always was (the client may have lost the first answer).
    retired = [item.id for _, item in items if active.get(item.machine_id) is False]
    stored_before = (
        set(session.scalars(_STORED_IDS, {"ids": retired})) if retired else set[uuid.UUID]()
    )
    kept = []
    for index, item in items:
        usable = True
        if item.user_id not in users:
            errors.append(item_error(index, "user_id", _UNKNOWN_USER, "unknown_user"))
            usable = False
        in_service = active.get(item.machine_id)
        if in_service is None:
            errors.append(item_error(index, "machine_id", _UNKNOWN_MACHINE, "unknown_machine"))
            usable = False
        elif not in_service and item.id not in stored_before:
            errors.append(item_error(index, "machine_id", _RETIRED_MACHINE, "retired_machine"))
            usable = False
        if usable:
            kept.append((index, item))
    return kept, users


def _copy_if_all_new(
    session: Session, items: Sequence[tuple[int, CheckupCreateBase]], uploaded_by: uuid.UUID
) -> bool:
    """Copy ``items`` straight into ``checkups`` if none of their ids is stored yet.

    False (and nothing written) when an id appears twice in the upload, or the primary key
    finds one stored already (a retry) or being stored by a concurrent upload. Trying is
    cheaper than asking first: most uploads are a session's first.
    """
    if len({item.id for _, item in items}) != len(items):
        return False
    driver = _driver_connection(session)
    # In id order (PostgreSQL compares uuids bytewise), as the staging path inserts too:
    # uploads sharing ids then always wait on each other in one order and never deadlock.
    ordered = sorted(items, key=lambda pair: pair[1].id.bytes)
    with _store_errors():
        try:
            # A savepoint: a concurrent upload's id fails the COPY, not the transaction.
            with driver.transaction(), driver.cursor() as cursor:
                set_json_dumps(orjson.dumps, context=cursor)
                with cursor.copy(_COPY_CHECKUPS) as copy:
                    copy.set_types(_CHECKUP_TYPES)
                    write_row = copy.write_row
                    for row in _checkup_rows(ordered, uploaded_by):
                        write_row(row)
        except psycopg.errors.UniqueViolation:
            return False
    return True


def _driver_connection(session: Session) -> psycopg.Connection[Any]:
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


def _checkup_rows(
    items: Iterable[tuple[int, CheckupCreateBase]], uploaded_by: uuid.UUID
) -> Iterator[tuple[Any, ...]]:
    for row in _staging_rows(items):
        yield (*row[1:], uploaded_by)


def _insert_new(
    session: Session, items: Sequence[tuple[int, CheckupCreateBase]], uploaded_by: uuid.UUID
) -> Counter[uuid.UUID]:
    """Copy ``items`` into the staging table and store the new ones; how many per user."""
    session.execute(text(_STAGING_TABLE))
    driver = _driver_connection(session)
    with _store_errors(), driver.cursor() as cursor:
        # Binary COPY: no text escaping, and PostgreSQL parses no uuid or timestamp text.
        # The cursor's own JSON dumper (orjson) writes ``information``.
        set_json_dumps(orjson.dumps, context=cursor)
        with cursor.copy(_COPY_STAGING) as copy:
            copy.set_types(_STAGING_TYPES)
            write_row = copy.write_row
            for row in _staging_rows(items):
                write_row(row)
    rows = session.execute(_INSERT_NEW, {"uploaded_by": uploaded_by}).all()
    return Counter(dict(rows))


def _audit_upload(
    session: Session,
    *,
    items: Sequence[tuple[int, CheckupCreateBase]],
    usernames: Mapping[uuid.UUID, str],
    created_per_user: Counter[uuid.UUID],
    conflicts: Sequence[int],
    upload: dict[str, int],
) -> None:
    """One ``checkups.upload`` event per user who got new check-ups: counts, never values."""
    if not created_per_user:
        return
    sent = Counter(item.user_id for _, item in items)
    conflicting = set(conflicts)
    conflicts_per_user = Counter(item.user_id for index, item in items if index in conflicting)
    audit.record(
        session=session,
        action="checkups.upload",
        subjects=[
            audit.Subject(
                id=user_id,
                username=usernames.get(user_id),
                details={
                    "created": created,
                    "duplicates": sent[user_id] - created - conflicts_per_user[user_id],
                    "upload": upload,
                },
            )
            for user_id, created in created_per_user.items()
            if created
        ],
    )


def _staging_rows(items: Iterable[tuple[int, CheckupCreateBase]]) -> Iterator[tuple[Any, ...]]:
    for index, item in items:
        # The information as sent, without the optional fields left out (or sent as null).
        fields = item.information.__dict__  # type: ignore[attr-defined]
        yield (
            index,
            item.id,
            item.user_id,
            item.machine_id,
            item.checkup_type,  # type: ignore[attr-defined]
            {name: value for name, value in fields.items() if value is not None},
            item.test_taken_by,
            item.taken_at,
        )


@contextmanager
def _store_errors() -> Iterator[None]:
    """Answer a lost connection during ``COPY`` like any other unreachable store (503)."""
    try:
        yield
    except psycopg.OperationalError:
        raise Unavailable("A backing store is unreachable; retry shortly.") from None


def _conflicting_items(session: Session) -> list[int]:
    return list(session.scalars(_CONFLICTS))


def _count_items(errors: Iterable[dict[str, Any]]) -> int:
    return len({error["loc"][1] for error in errors})


def _list_indices(indices: Sequence[int], shown: int = 10) -> str:
    listed = ", ".join(str(i) for i in indices[:shown])
    return listed + (", …" if len(indices) > shown else "")
