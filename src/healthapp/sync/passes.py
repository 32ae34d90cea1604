"""The sync's passes: incremental (the outbox) and full (every report, a new generation).

Every pass is safe to run in several processes at once and to kill at any point:

* Each claimed user is locked for the claiming transaction (``claims``), so two workers
  never rebuild one user at the same time.
* Documents are built after the claim, in the claiming transaction: each statement sees
  every change the claimed rows stand for.
* Redis is written before the claimed rows are deleted and the transaction commits. A crash
  before the commit leaves the rows for the next pass, which rewrites the same documents.
* Incremental passes hold a shared session lock and the full rebuild an exclusive one, so a
  rebuild never races an incremental write into the generation it is about to replace.
  Changes made during a rebuild wait in the outbox for the next pass.
* A rebuild switches readers to its generation only if Redis still holds every report it
  wrote (``writer.switch_generation``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import redis
import structlog
from sqlalchemy import BigInteger, Connection, Engine, bindparam, func, select

from healthapp.domain.report_codec import ReportDocument
from healthapp.sync.claims import (
    OutboxEntry,
    claim_outbox_batch,
    delete_outbox_entries,
    outbox_backlog,
)
from healthapp.sync.sources import assemble_reports, build_reports, count_users, every_report_source
from healthapp.sync.stats import SyncStats, recorded
from healthapp.sync.writer import (
    current_generation,
    drop_generations,
    next_generation,
    switch_generation,
    write_reports,
)

log = structlog.get_logger("healthapp.sync")

#: Session lock: shared by incremental passes, exclusive for the full rebuild.
SYNC_LOCK_KEY = 0x6865616C74687379

#: Called with the number of items just done (a progress bar's ``update``).
Progress = Callable[[int], None]

_KEY = bindparam("k", SYNC_LOCK_KEY, type_=BigInteger)
_LOCK = select(func.pg_advisory_lock(_KEY))
_TRY_LOCK_SHARED = select(func.pg_try_advisory_lock_shared(_KEY))
_UNLOCK = select(func.pg_advisory_unlock(_KEY))
_UNLOCK_SHARED = select(func.pg_advisory_unlock_shared(_KEY))


@contextmanager
def sync_lock(conn: Connection, *, exclusive: bool) -> Iterator[bool]:
    """The session lock between passes: shared (try) or exclusive (wait)."""
    if exclusive:
        conn.execute(_LOCK)
        got = True
    else:
        got = bool(conn.execute(_TRY_LOCK_SHARED).scalar())
    conn.commit()
    try:
        yield got
    finally:
        if got:
            conn.rollback()
            with suppress(Exception):
                conn.execute(_UNLOCK if exclusive else _UNLOCK_SHARED)
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
    with recorded(SyncStats(), redis_client=redis_client) as stats:
        if current_generation(redis_client=redis_client) is None:
            full_rebuild(engine=engine, redis_client=redis_client, only_if_missing=True)
        with engine.connect() as conn, sync_lock(conn, exclusive=False) as got:
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
                seconds = time.perf_counter() - batch_started
                stats.count_batch(reports, entries=len(claimed), seconds=seconds)
                _log_batch(claimed, reports, seconds=seconds)
                if progress is not None:
                    progress(len(claimed) + len(left))
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
    with recorded(SyncStats(kind="full"), redis_client=redis_client) as stats:
        with engine.connect() as conn, sync_lock(conn, exclusive=True):
            if only_if_missing and current_generation(redis_client=redis_client) is not None:
                stats.skipped = True
                return stats
            generation = next_generation(redis_client=redis_client)
            stats.generation = generation
            drop_generations(redis_client=redis_client, keep=None, only=generation)
            total = count_users(conn=conn)
            conn.commit()
            if on_total is not None:
                on_total(total)
            batch_started = time.perf_counter()
            for sources in every_report_source(engine=engine, batch_size=batch_size):
                reports = assemble_reports(sources)
                write_reports(redis_client=redis_client, generation=generation, reports=reports)
                now = time.perf_counter()
                stats.count_batch(reports, entries=0, seconds=now - batch_started)
                batch_started = now
                if progress is not None:
                    progress(len(sources.names))
            switch_generation(
                redis_client=redis_client, generation=generation, reports=stats.documents_written
            )
            drop_generations(redis_client=redis_client, keep=generation)
        stats.usernames = []
    return stats
