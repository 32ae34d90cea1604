"""What the sync does: claim outbox entries, rebuild those reports, write them to Redis.

Every pass is safe to run in several processes at once and to kill at any point:

* Outbox rows are claimed with ``FOR UPDATE SKIP LOCKED``, and each claimed user with a
  transaction-level advisory lock, so two workers never rebuild one user at the same time
  (an older snapshot can never overwrite a newer document).
* Documents are built after the claim, in the claiming transaction: each statement sees
  every change the claimed rows stand for.
* Redis is written before the claimed rows are deleted and the transaction commits. A crash
  before the commit leaves the rows for the next pass, which rewrites the same documents.
* Incremental passes hold a shared session lock and the full rebuild an exclusive one, so a
  rebuild never races an incremental write into the generation it is about to replace.
  Changes made during a rebuild wait in the outbox for the next pass.
* A rebuild switches readers to its generation only if Redis still holds every report it
  wrote: a Redis that restarted empty half-way would otherwise be handed a generation
  missing the first half, which no later incremental pass would notice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
import redis
import structlog
from sqlalchemy import Connection, Engine, text

from healthapp.domain.report_codec import ReportDocument, format_timestamp
from healthapp.domain.report_keys import (
    CURRENT_GENERATION_KEY,
    GENERATION_SEQUENCE_KEY,
    HASH_FIELD,
    SYNC_STATS_KEY,
    generation_prefix,
    staging_key,
    user_key,
    usernames_of,
    users_index_key,
)
from healthapp.domain.report_render import assemble_document
from healthapp.domain.sync_stats import histogram_increments

log = structlog.get_logger("healthapp.sync")

#: Session lock: shared by incremental passes, exclusive for the full rebuild.
SYNC_LOCK_KEY = 0x6865616C74687379
#: First key of the per-user transaction locks (the second is the username's hash).
USER_LOCK_CLASS = 0x68617070

#: Called with the number of items just done (a progress bar's ``update``).
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One claimed outbox row."""

    id: int
    user_id: uuid.UUID
    username: str
    request_id: str | None = None


@dataclass
class SyncStats:
    """What one pass did; logged, and kept in Redis for the metrics."""

    kind: str = "incremental"
    documents_written: int = 0
    documents_removed: int = 0
    entries_processed: int = 0
    batches: int = 0
    lag_seconds: float | None = None
    duration_seconds: float = 0.0
    checkups_written: int = 0
    skipped: bool = False
    generation: int | None = None
    usernames: list[str] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)


class StoreLostError(RuntimeError):
    """Redis lost reports this pass wrote (it restarted empty); the next pass rebuilds."""


@dataclass
class VerifyResult:
    """Reports in Redis compared with PostgreSQL."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.orphaned)


# Generations ---------------------------------------------------------------------------


def current_generation(*, redis_client: redis.Redis) -> int | None:
    """The generation readers use, or ``None`` before the first sync."""
    value = redis_client.get(CURRENT_GENERATION_KEY)
    return int(value) if value is not None else None


# Claiming ------------------------------------------------------------------------------


def outbox_backlog(*, conn: Connection) -> tuple[int, int | None, float | None]:
    """``(pending entries, newest id, age in seconds of the oldest)`` of the outbox."""
    count, max_id, lag = conn.execute(
        text(
            "SELECT count(*), max(id),"
            " extract(epoch FROM clock_timestamp() - min(enqueued_at))::float8"
            " FROM report_outbox"
        )
    ).one()
    return int(count), max_id, lag


def claim_outbox_batch(
    *, conn: Connection, limit: int, max_id: int, exclude_ids: Sequence[int] = ()
) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
    """Lock up to ``limit`` outbox rows and their users: ``(claimed, left for later)``.

    Rows another worker holds are skipped; so are rows whose user another worker is
    rebuilding right now (they stay in the outbox for a later pass).
    """
    rows = conn.execute(
        text(
            "SELECT id, user_id, username, request_id FROM report_outbox"
            " WHERE id <= :max_id AND NOT (id = ANY(:exclude))"
            " ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"max_id": max_id, "exclude": list(exclude_ids), "limit": limit},
    ).all()
    entries = [
        OutboxEntry(id=r.id, user_id=r.user_id, username=r.username, request_id=r.request_id)
        for r in rows
    ]
    if not entries:
        return [], []
    names = sorted({entry.username for entry in entries})
    locked = {
        name
        for name, got in conn.execute(
            text(
                "SELECT name, pg_try_advisory_xact_lock(:cls, hashtext(name))"
                " FROM unnest(CAST(:names AS text[])) AS name"
            ),
            {"cls": USER_LOCK_CLASS, "names": names},
        )
        if got
    }
    claimed = [entry for entry in entries if entry.username in locked]
    left = [entry for entry in entries if entry.username not in locked]
    return claimed, left


def delete_outbox_entries(*, conn: Connection, ids: Sequence[int]) -> None:
    """Delete exactly the claimed rows (newer rows for the same users stay)."""
    conn.execute(text("DELETE FROM report_outbox WHERE id = ANY(:ids)"), {"ids": list(ids)})


# Building ------------------------------------------------------------------------------


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value.isoformat()


def _iso_sql(column: str) -> str:
    """SQL rendering ``column`` as the APIs do: UTC, ``Z``, microseconds only if any."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_part('microseconds',"
        f" {column})::bigint % 1000000 = 0 THEN '' ELSE to_char({utc}, '.US') END || 'Z'"
    )


@dataclass
class ReportSources:
    """The rows a batch of reports is built from, as four set-based statements return them."""

    names: list[str]
    users: list[Any]
    diseases: dict[uuid.UUID, list[dict[str, Any]]]
    histories: dict[uuid.UUID, str]
    machines: dict[str, dict[str, Any]]


def fetch_report_sources(*, conn: Connection, usernames: Iterable[str]) -> ReportSources:
    """Read everything these users' reports show: four statements, whatever the sizes."""
    names = sorted(set(usernames))
    sources = ReportSources(names=names, users=[], diseases={}, histories={}, machines={})
    if not names:
        return sources
    sources.users = list(
        conn.execute(
            text(
                "SELECT u.id, u.username, p.user_id AS profile_user, p.avatar, p.blood_group,"
                " p.date_of_birth, p.sex, p.created_at, p.updated_at"
                " FROM users u LEFT JOIN profiles p ON p.user_id = u.id"
                " WHERE u.username = ANY(:names)"
            ),
            {"names": names},
        ).all()
    )
    if not sources.users:
        return sources
    user_ids = [row.id for row in sources.users]
    for row in conn.execute(
        text(
            "SELECT user_id, id, name, details, diagnosed_on, created_at FROM diseases"
            " WHERE user_id = ANY(:ids) ORDER BY user_id, created_at, id"
        ),
        {"ids": user_ids},
    ):
        sources.diseases.setdefault(row.user_id, []).append(
            {
                "id": str(row.id),
                "name": row.name,
                "details": row.details,
                "diagnosed_on": _iso(row.diagnosed_on),
                "created_at": _iso(row.created_at),
            }
        )
    # One JSON array per user, newest first, parsed when the documents are assembled.
    sources.histories = {
        row[0]: row[1]
        for row in conn.execute(
            text(
                "SELECT user_id, json_agg(json_build_array("  # noqa: S608 (fixed SQL only)
                " id, checkup_type, information, machine_id, test_taken_by,"
                " (extract(epoch FROM taken_at) * 1000000)::bigint,"
                f" {_iso_sql('taken_at')}, {_iso_sql('created_at')})"
                " ORDER BY taken_at DESC, id DESC)::text"
                " FROM checkups WHERE user_id = ANY(:ids) GROUP BY user_id"
            ),
            {"ids": user_ids},
        )
    }
    sources.machines = {
        str(row.id): {"machine_type": row.machine_type, "manufacturer": row.manufacturer}
        for row in conn.execute(
            text(
                "SELECT id, machine_type, manufacturer FROM machines WHERE id IN"
                " (SELECT DISTINCT machine_id FROM checkups WHERE user_id = ANY(:ids))"
            ),
            {"ids": user_ids},
        )
    }
    return sources


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


# Writing -------------------------------------------------------------------------------


def write_reports(
    *,
    redis_client: redis.Redis,
    generation: int,
    reports: dict[str, ReportDocument | None],
) -> None:
    """Replace these users' reports in ``generation`` (``None``: remove it) in one pipeline.

    Each report is written whole under a staging key and renamed over the live one, so a
    reader sees the old report or the new one, never a mix. No command spans two users:
    the staging key shares the user's hash tag, so on Redis Cluster both live in one slot,
    and the users index is updated by commands of its own.
    """
    index = users_index_key(generation)
    pipe = redis_client.pipeline(transaction=False)
    removed = []
    for username, document in reports.items():
        key = user_key(generation, username)
        if document is None:
            pipe.delete(key)
            removed.append(username)
            continue
        staging = staging_key(generation, username)
        pipe.delete(staging)
        pipe.hset(staging, mapping=document.fields())  # type: ignore[arg-type]
        pipe.rename(staging, key)
    present = {name: 0 for name, document in reports.items() if document is not None}
    if present:
        pipe.zadd(index, present)
    if removed:
        pipe.zrem(index, *removed)
    pipe.execute()


# Passes --------------------------------------------------------------------------------


@contextmanager
def _sync_lock(conn: Connection, *, exclusive: bool) -> Iterator[bool]:
    """The session lock between passes: shared (try) or exclusive (wait)."""
    if exclusive:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SYNC_LOCK_KEY})
        got = True
    else:
        got = bool(
            conn.execute(
                text("SELECT pg_try_advisory_lock_shared(:k)"), {"k": SYNC_LOCK_KEY}
            ).scalar()
        )
    conn.commit()
    try:
        yield got
    finally:
        if got:
            conn.rollback()
            unlock = "pg_advisory_unlock" if exclusive else "pg_advisory_unlock_shared"
            with suppress(Exception):
                conn.execute(text(f"SELECT {unlock}(:k)"), {"k": SYNC_LOCK_KEY})
                conn.commit()


def run_incremental_sync(
    *,
    engine: Engine,
    redis_client: redis.Redis,
    batch_size: int = 500,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> SyncStats:
    """One incremental pass over the outbox as it stood when the pass began.

    With no generation in Redis yet (first start, or Redis lost its data) the pass first
    rebuilds every report.
    """
    started = time.perf_counter()
    stats = SyncStats()
    try:
        if current_generation(redis_client=redis_client) is None:
            full_rebuild(engine=engine, redis_client=redis_client, only_if_missing=True)
        with engine.connect() as conn, _sync_lock(conn, exclusive=False) as got:
            if not got:
                stats.skipped = True
                log.info("sync pass skipped: a full rebuild is running")
                return stats
            generation = current_generation(redis_client=redis_client)
            assert generation is not None
            stats.generation = generation
            pending, max_id, stats.lag_seconds = outbox_backlog(conn=conn)
            conn.commit()
            if on_total is not None:
                on_total(pending)
            left_ids: list[int] = []
            while max_id is not None:
                batch_started = time.perf_counter()
                with conn.begin():
                    claimed, left = claim_outbox_batch(
                        conn=conn, limit=batch_size, max_id=max_id, exclude_ids=left_ids
                    )
                    left_ids.extend(entry.id for entry in left)
                    if not claimed:
                        break
                    reports = build_reports(
                        conn=conn, usernames=(entry.username for entry in claimed)
                    )
                    write_reports(redis_client=redis_client, generation=generation, reports=reports)
                    delete_outbox_entries(conn=conn, ids=[entry.id for entry in claimed])
                _count_batch(stats, reports, entries=len(claimed))
                stats.batch_seconds.append(time.perf_counter() - batch_started)
                _log_batch(claimed, reports, seconds=stats.batch_seconds[-1])
                if progress is not None:
                    progress(len(claimed) + len(left))
    except Exception as error:
        stats.duration_seconds = time.perf_counter() - started
        _record(redis_client, stats, error=error)
        raise
    stats.duration_seconds = time.perf_counter() - started
    _record(redis_client, stats)
    return stats


def _log_batch(
    claimed: Sequence[OutboxEntry], reports: dict[str, ReportDocument | None], *, seconds: float
) -> None:
    """One line per batch naming the requests (``X-Request-ID``) whose changes it synced."""
    request_ids = sorted({entry.request_id for entry in claimed if entry.request_id})
    log.bind(request_ids=request_ids).info(
        "sync batch",
        entries=len(claimed),
        users=len(reports),
        duration_ms=round(seconds * 1000, 1),
    )


def _count_batch(
    stats: SyncStats, reports: dict[str, ReportDocument | None], *, entries: int
) -> None:
    stats.batches += 1
    stats.entries_processed += entries
    for username, document in reports.items():
        stats.usernames.append(username)
        if document is None:
            stats.documents_removed += 1
        else:
            stats.documents_written += 1
            stats.checkups_written += document.meta["count"]


def _usernames_in_batches(conn: Connection, batch_size: int) -> Iterator[list[str]]:
    """Every username, in order, ``batch_size`` at a time (keyset, no OFFSET)."""
    after = ""
    while True:
        names = list(
            conn.execute(
                text(
                    "SELECT username FROM users WHERE username > :after ORDER BY username LIMIT :n"
                ),
                {"after": after, "n": batch_size},
            ).scalars()
        )
        conn.commit()
        if not names:
            return
        yield names
        after = names[-1]


def full_rebuild(
    *,
    engine: Engine,
    redis_client: redis.Redis,
    batch_size: int = 500,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    only_if_missing: bool = False,
) -> SyncStats:
    """Build every report into a new generation, switch readers to it, drop the old ones."""
    started = time.perf_counter()
    stats = SyncStats(kind="full")
    try:
        with engine.connect() as conn, _sync_lock(conn, exclusive=True):
            if only_if_missing and current_generation(redis_client=redis_client) is not None:
                stats.skipped = True
                return stats
            generation = _next_generation(redis_client)
            stats.generation = generation
            _drop_generations(redis_client, keep=None, only=generation)
            total = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
            conn.commit()
            if on_total is not None:
                on_total(int(total))
            # PostgreSQL reads the next batch while this thread assembles and writes one.
            batch_started = time.perf_counter()
            for sources in _prefetched_sources(engine, batch_size):
                reports = assemble_reports(sources)
                write_reports(redis_client=redis_client, generation=generation, reports=reports)
                _count_batch(stats, reports, entries=0)
                now = time.perf_counter()
                stats.batch_seconds.append(now - batch_started)
                batch_started = now
                if progress is not None:
                    progress(len(sources.names))
            _switch_generation(redis_client, generation, reports=stats.documents_written)
            _drop_generations(redis_client, keep=generation)
    except Exception as error:
        stats.duration_seconds = time.perf_counter() - started
        _record(redis_client, stats, error=error)
        raise
    stats.usernames = []
    stats.duration_seconds = time.perf_counter() - started
    _record(redis_client, stats)
    return stats


def _prefetched_sources(engine: Engine, batch_size: int) -> Iterator[ReportSources]:
    """Every user's report sources in batches, the next batch read while one is used."""

    def fetch(conn: Connection, after: str) -> ReportSources:
        with conn.begin():
            names = list(
                conn.execute(
                    text(
                        "SELECT username FROM users WHERE username > :after"
                        " ORDER BY username LIMIT :n"
                    ),
                    {"after": after, "n": batch_size},
                ).scalars()
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


def _next_generation(redis_client: redis.Redis) -> int:
    current = current_generation(redis_client=redis_client) or 0
    generation = int(redis_client.incr(GENERATION_SEQUENCE_KEY))
    if generation <= current:
        generation = current + 1
        redis_client.set(GENERATION_SEQUENCE_KEY, generation)
    return generation


def _switch_generation(redis_client: redis.Redis, generation: int, *, reports: int) -> None:
    """Point readers at ``generation`` if it holds the ``reports`` the rebuild wrote into it.

    Checked before the switch and again after it, as Redis may restart in between (the
    switch then lands in an empty store, and is taken back).
    """
    index = users_index_key(generation)
    if int(redis_client.zcard(index)) != reports:
        raise StoreLostError(_LOST.format(generation=generation))
    redis_client.set(CURRENT_GENERATION_KEY, generation)
    if int(redis_client.zcard(index)) != reports:
        redis_client.delete(CURRENT_GENERATION_KEY)
        raise StoreLostError(_LOST.format(generation=generation))


_LOST = (
    "Redis lost reports of generation {generation} while it was being built (did it restart?);"
    " readers were not switched to it. The next pass rebuilds every report."
)


def _drop_generations(
    redis_client: redis.Redis, *, keep: int | None, only: int | None = None
) -> int:
    """UNLINK the keys of every generation but ``keep`` (or only of ``only``), in batches."""
    pattern = generation_prefix(only) + "*" if only is not None else "rpt:g*"
    kept = generation_prefix(keep) if keep is not None else None
    dropped = 0
    batch: list[bytes] = []
    for key in redis_client.scan_iter(match=pattern, count=1000):
        if kept is not None and key.decode().startswith(kept):
            continue
        batch.append(key)
        if len(batch) >= 1000:
            dropped += int(redis_client.unlink(*batch))
            batch = []
    if batch:
        dropped += int(redis_client.unlink(*batch))
    return dropped


def verify(
    *,
    engine: Engine,
    redis_client: redis.Redis,
    batch_size: int = 500,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Compare every report in Redis with one freshly built from PostgreSQL."""
    result = VerifyResult()
    generation = current_generation(redis_client=redis_client)
    known: set[str] = set()
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
        conn.commit()
        if on_total is not None:
            on_total(int(total))
        for names in _usernames_in_batches(conn, batch_size):
            with conn.begin():
                reports = build_reports(conn=conn, usernames=names)
            known.update(names)
            stored: list[Any] = [None] * len(names)
            if generation is not None:
                pipe = redis_client.pipeline(transaction=False)
                for name in names:
                    pipe.hget(user_key(generation, name), HASH_FIELD)
                stored = pipe.execute()
            for name, version in zip(names, stored, strict=True):
                document = reports[name]
                result.checked += 1
                if version is None:
                    result.missing.append(name)
                elif document is None or version.decode() != document.content_hash:
                    result.stale.append(name)
            if progress is not None:
                progress(len(names))
    if generation is not None:
        in_store = usernames_of(
            redis_client.scan_iter(match=generation_prefix(generation) + "*", count=1000)
        )
        indexed = {m.decode() for m in redis_client.zrange(users_index_key(generation), 0, -1)}  # type: ignore[union-attr]
        result.orphaned = sorted((in_store | indexed) - known)
        result.missing = sorted(set(result.missing) | (known - indexed))
    return result


# Observability -------------------------------------------------------------------------


def _record(redis_client: redis.Redis, stats: SyncStats, *, error: Exception | None = None) -> None:
    """Log the pass (never a health value) and keep its figures in Redis for the metrics."""
    figures = {
        "kind": stats.kind,
        "documents_written": stats.documents_written,
        "documents_removed": stats.documents_removed,
        "entries_processed": stats.entries_processed,
        "checkups_written": stats.checkups_written,
        "batches": stats.batches,
        "lag_seconds": round(stats.lag_seconds, 3) if stats.lag_seconds is not None else None,
        "duration_ms": round(stats.duration_seconds * 1000, 1),
        "generation": stats.generation,
    }
    if error is not None:
        log.error("sync pass failed", error=type(error).__name__, **figures)
    elif not stats.skipped:
        log.info("sync pass", **figures)
    with suppress(redis.RedisError):
        _store_figures(redis_client, stats, failed=error is not None)


def _store_figures(redis_client: redis.Redis, stats: SyncStats, *, failed: bool) -> None:
    """Add the pass's figures to the stats hash the Reports API serves as metrics."""
    pipe = redis_client.pipeline(transaction=False)
    now = time.time()
    kind = stats.kind
    increments: dict[str, float] = {}
    if failed:
        increments[f"errors_total:{kind}"] = 1
        pipe.hset(SYNC_STATS_KEY, "last_error_at", now)
    elif not stats.skipped:
        last: dict[str, float] = {
            "last_run_at": now,
            "last_duration_seconds": stats.duration_seconds,
            "last_documents_written": stats.documents_written,
        }
        if kind == "incremental":
            last["last_lag_seconds"] = stats.lag_seconds or 0.0
            last["last_entries_processed"] = stats.entries_processed
        else:
            last["last_full_rebuild_at"] = now
        pipe.hset(SYNC_STATS_KEY, mapping=last)  # type: ignore[arg-type]
        increments.update(
            {
                f"passes_total:{kind}": 1,
                "documents_written_total": stats.documents_written,
                "documents_removed_total": stats.documents_removed,
                "entries_processed_total": stats.entries_processed,
                "checkups_written_total": stats.checkups_written,
            }
        )
        increments.update(
            histogram_increments("pass_duration_seconds", kind, [stats.duration_seconds])
        )
    # Batches that finished count even when a later one failed.
    increments.update(histogram_increments("batch_duration_seconds", kind, stats.batch_seconds))
    for name, amount in increments.items():
        if name.endswith(":sum"):
            pipe.hincrbyfloat(SYNC_STATS_KEY, name, amount)
        elif amount:
            pipe.hincrby(SYNC_STATS_KEY, name, int(amount))
    pipe.execute()
