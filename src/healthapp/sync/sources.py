"""The rows reports are built from: a few set-based statements per batch of users.

A batch costs four statements whatever the number of users and check-ups: users with their
profiles, diseases, check-ups (one JSON array per user, built by PostgreSQL) and the
machines those check-ups name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    Engine,
    Text,
    any_,
    bindparam,
    case,
    cast,
    extract,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from healthapp.domain.report_codec import ReportDocument, format_timestamp
from healthapp.domain.report_render import assemble_document
from healthapp.models import Checkup, Disease, Machine, Profile, User

_USERS = User.__table__
_PROFILES = Profile.__table__
_DISEASES = Disease.__table__
_CHECKUPS = Checkup.__table__
_MACHINES = Machine.__table__


def _iso_text(column: Any) -> ColumnElement[str]:
    """SQL rendering ``column`` as the APIs do: UTC, ``Z``, microseconds only if any."""
    utc = column.op("AT TIME ZONE")(literal_column("'UTC'"))
    whole_second = cast(
        func.date_part(literal_column("'microseconds'"), column), BigInteger
    ) % literal_column("1000000") == literal_column("0")
    fraction = case(
        (whole_second, literal_column("''", Text)),
        else_=func.to_char(utc, literal_column("'.US'"), type_=Text),
    )
    seconds = func.to_char(utc, literal_column("""'YYYY-MM-DD"T"HH24:MI:SS'"""), type_=Text)
    return seconds + fraction + literal_column("'Z'", Text)


_NAMES: BindParameter[list[str]] = bindparam("names")
_IDS: BindParameter[list[uuid.UUID]] = bindparam("ids")

_USER_COUNT = select(func.count()).select_from(_USERS)
_USERNAMES_AFTER = (
    select(_USERS.c.username)
    .where(_USERS.c.username > bindparam("after"))
    .order_by(_USERS.c.username)
    .limit(bindparam("n"))
)
_USERS_WITH_PROFILES = (
    select(
        _USERS.c.id,
        _USERS.c.username,
        _PROFILES.c.user_id.label("profile_user"),
        _PROFILES.c.avatar,
        _PROFILES.c.blood_group,
        _PROFILES.c.date_of_birth,
        _PROFILES.c.sex,
        _PROFILES.c.created_at,
        _PROFILES.c.updated_at,
    )
    .select_from(_USERS.outerjoin(_PROFILES))
    .where(_USERS.c.username == any_(_NAMES))
)
_DISEASES_OF = (
    select(
        _DISEASES.c.user_id,
        _DISEASES.c.id,
        _DISEASES.c.name,
        _DISEASES.c.details,
        _DISEASES.c.diagnosed_on,
        _DISEASES.c.created_at,
    )
    .where(_DISEASES.c.user_id == any_(_IDS))
    .order_by(_DISEASES.c.user_id, _DISEASES.c.created_at, _DISEASES.c.id)
)
#: One JSON array of compact records per user, newest first (``report_codec``'s order).
_HISTORIES = (
    select(
        _CHECKUPS.c.user_id,
        cast(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(
                        _CHECKUPS.c.id,
                        _CHECKUPS.c.checkup_type,
                        _CHECKUPS.c.information,
                        _CHECKUPS.c.machine_id,
                        _CHECKUPS.c.test_taken_by,
                        cast(
                            extract("epoch", _CHECKUPS.c.taken_at) * literal_column("1000000"),
                            BigInteger,
                        ),
                        _iso_text(_CHECKUPS.c.taken_at),
                        _iso_text(_CHECKUPS.c.created_at),
                    ),
                    _CHECKUPS.c.taken_at.desc(),
                    _CHECKUPS.c.id.desc(),
                )
            ),
            Text,
        ),
    )
    .where(_CHECKUPS.c.user_id == any_(_IDS))
    .group_by(_CHECKUPS.c.user_id)
)
_MACHINES_USED = select(_MACHINES.c.id, _MACHINES.c.machine_type, _MACHINES.c.manufacturer).where(
    _MACHINES.c.id.in_(
        select(_CHECKUPS.c.machine_id).distinct().where(_CHECKUPS.c.user_id == any_(_IDS))
    )
)


@dataclass
class ReportSources:
    """The rows a batch of reports is built from, as four set-based statements return them."""

    names: list[str]
    users: list[Any]
    diseases: dict[uuid.UUID, list[dict[str, Any]]]
    histories: dict[uuid.UUID, str]
    machines: dict[str, dict[str, Any]]


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value.isoformat()


def count_users(*, conn: Connection) -> int:
    """How many users there are: the reports a full pass builds."""
    return int(conn.execute(_USER_COUNT).scalar_one())


def fetch_report_sources(*, conn: Connection, usernames: Iterable[str]) -> ReportSources:
    """Read everything these users' reports show: four statements, whatever the sizes."""
    names = sorted(set(usernames))
    sources = ReportSources(names=names, users=[], diseases={}, histories={}, machines={})
    if not names:
        return sources
    sources.users = list(conn.execute(_USERS_WITH_PROFILES, {"names": names}).all())
    if not sources.users:
        return sources
    ids = {"ids": [row.id for row in sources.users]}
    for row in conn.execute(_DISEASES_OF, ids):
        sources.diseases.setdefault(row.user_id, []).append(
            {
                "id": str(row.id),
                "name": row.name,
                "details": row.details,
                "diagnosed_on": _iso(row.diagnosed_on),
                "created_at": _iso(row.created_at),
            }
        )
    # Parsed when the documents are assembled, off the reading thread of a full pass.
    sources.histories = {row[0]: row[1] for row in conn.execute(_HISTORIES, ids)}
    sources.machines = {
        str(row.id): {"machine_type": row.machine_type, "manufacturer": row.manufacturer}
        for row in conn.execute(_MACHINES_USED, ids)
    }
    return sources


def every_report_source(*, engine: Engine, batch_size: int) -> Iterator[ReportSources]:
    """Every user's report sources by username, ``batch_size`` users at a time.

    Keyset paging (no OFFSET), each batch read in a transaction of its own; PostgreSQL
    reads the next batch on a second thread while the caller uses this one.
    """

    def fetch(conn: Connection, after: str) -> ReportSources:
        with conn.begin():
            names = list(
                conn.execute(_USERNAMES_AFTER, {"after": after, "n": batch_size}).scalars()
            )
            return fetch_report_sources(conn=conn, usernames=names)

    with engine.connect() as conn, ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(fetch, conn, "")
        while True:
            sources = pending.result()
            if not sources.names:
                return
            pending = reader.submit(fetch, conn, sources.names[-1])
            yield sources


def assemble_reports(
    sources: ReportSources, *, synced_at: datetime | None = None
) -> dict[str, ReportDocument | None]:
    """Each user's report document, ``None`` for a username no user has any more."""
    synced_at = synced_at or datetime.now(UTC)
    reports: dict[str, ReportDocument | None] = dict.fromkeys(sources.names)
    for row in sources.users:
        profile = None
        if row.profile_user is not None:
            profile = {
                "avatar": row.avatar,
                "blood_group": row.blood_group,
                "date_of_birth": _iso(row.date_of_birth),
                "sex": row.sex,
                "created_at": _iso(row.created_at),
                "updated_at": _iso(row.updated_at),
            }
        history = sources.histories.get(row.id)
        reports[row.username] = assemble_document(
            username=row.username,
            user_id=str(row.id),
            profile=profile,
            diseases=sources.diseases.get(row.id, []),
            records=orjson.loads(history) if history else [],
            machines=sources.machines,
            synced_at=synced_at,
        )
    return reports


def build_reports(
    *, conn: Connection, usernames: Iterable[str], synced_at: datetime | None = None
) -> dict[str, ReportDocument | None]:
    """Each user's report document, ``None`` for a username no user has any more.

    Four set-based statements per call, whatever the number of users and check-ups.
    """
    sources = fetch_report_sources(conn=conn, usernames=usernames)
    return assemble_reports(sources, synced_at=synced_at)
