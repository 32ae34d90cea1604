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
* Every batch and every rebuild advances the sync watermark in both stores
  (``watermark``). A pass that finds Redis behind PostgreSQL (it restarted without its
  last writes, or empty), ahead of it (the database was restored) or holding reports of an
  older layout rebuilds every report first; so does one whose batch finds Redis behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import redis
import structlog
from sqlalchemy import BigInteger, Connection, Engine, bindparam, func, select

from healthapp.auth import token_store
from healthapp.domain.report_codec import ReportDocument
from healthapp.domain.sync_stats import NO_GENERATION, OLD_LAYOUT
from healthapp.sync.claims import (
    OutboxEntry,
    claim_outbox_batch,
    delete_outbox_entries,
    outbox_backlog,
)
from healthapp.sync.sources import assemble_reports, build_reports, count_users, every_report_source
from healthapp.sync.stats import SyncStats, recorded
from healthapp.sync.watermark import (
    StoreBehindError,
    Watermarks,
    advance_watermark,
    read_watermarks,
    record_rebuilt,
)
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

    When Redis does not hold what PostgreSQL says it should (no generation yet, a watermark
    behind or ahead of PostgreSQL's, an older layout) the pass first rebuilds every report;
    a batch that finds Redis behind stops the pass, which then rebuilds every report.
    """
    with recorded(SyncStats(), redis_client=redis_client) as stats:
        with engine.connect() as conn:
            # Outside the sync lock a batch of another pass may be half-way; the rebuild
            # looks again under its lock and does nothing if all is well.
            needed = read_watermarks(conn=conn, redis_client=redis_client).rebuild_reason
        if needed is not None:
            full_rebuild(
                engine=engine, redis_client=redis_client, batch_size=batch_size, only_if_needed=True
            )
        try:
            _sync_outbox(
                engine=engine,
                redis_client=redis_client,
                stats=stats,
                batch_size=batch_size,
                progress=progress,
                on_total=on_total,
            )
        except StoreBehindError as error:
            log.warning("sync pass stopped: Redis lost writes while it ran", detail=str(error))
            full_rebuild(
                engine=engine, redis_client=redis_client, batch_size=batch_size, only_if_needed=True
            )
    return stats


def _sync_outbox(
    *,
    engine: Engine,
    redis_client: redis.Redis,
    stats: SyncStats,
    batch_size: int,
    progress: Progress | None,
    on_total: Callable[[int], None] | None,
) -> None:
    """The batches of an incremental pass, under the shared sync lock.

    Raises ``StoreBehindError`` (that batch rolled back) if Redis lost writes meanwhile.
    """
    with engine.connect() as conn, sync_lock(conn, exclusive=False) as got:
        if not got:
            stats.skipped = True
            log.info("sync pass skipped: a full rebuild is running")
            return
        generation = current_generation(redis_client=redis_client)
        if generation is None:
            raise StoreBehindError("Redis lost every report since the pass began")
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
                reports = build_reports(conn=conn, usernames=(entry.username for entry in claimed))
                write_reports(
                    redis_client=redis_client,
                    generation=generation,
                    reports=reports,
                    watermark=advance_watermark(conn=conn),
                )
                delete_outbox_entries(conn=conn, ids=[entry.id for entry in claimed])
            seconds = time.perf_counter() - batch_started
            stats.count_batch(reports, entries=len(claimed), seconds=seconds)
            _log_batch(claimed, reports, seconds=seconds)
            if progress is not None:
                progress(len(claimed) + len(left))


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
    only_if_needed: bool = False,
) -> SyncStats:
    """Build every report into a new generation, switch readers to it, drop the old ones,
    and advance the watermark in both stores.

    ``only_if_needed``: only if Redis does not hold what PostgreSQL says it should
    (``Watermarks.rebuild_reason``, looked at under the exclusive lock), logged and counted.
    """
    with recorded(SyncStats(kind="full"), redis_client=redis_client) as stats:
        with engine.connect() as conn, sync_lock(conn, exclusive=True):
            if only_if_needed:
                watermarks = read_watermarks(conn=conn, redis_client=redis_client)
                conn.commit()
                stats.reason = watermarks.rebuild_reason
                if stats.reason is None:
                    stats.skipped = True
                    return stats
                _log_reason(watermarks)
                # What Redis lost may be revocations too: the ended sessions go back first.
                republished = token_store.republish(connection=conn, redis_client=redis_client)
                conn.commit()
                log.info("ended sessions written to Redis again", sessions=republished)
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
            with conn.begin():
                # Every batch committed before the lock was taken is in what was read.
                record_rebuilt(redis_client=redis_client, seq=advance_watermark(conn=conn))
        stats.usernames = []
    return stats


def _log_reason(watermarks: Watermarks) -> None:
    """Say why every report is rebuilt: a warning when Redis lost writes or PostgreSQL was
    restored under it, a note on a first start or a change of layout."""
    reason = watermarks.rebuild_reason
    figures = {
        "reason": reason,
        "redis_watermark": watermarks.held,
        "postgresql_watermark": watermarks.committed,
        "layout": watermarks.layout,
    }
    if reason == NO_GENERATION and watermarks.committed == 0:
        log.info("no reports in Redis yet: building every report", **figures)
    elif reason == OLD_LAYOUT:
        log.info("the reports in Redis are of an older layout: rebuilding every report", **figures)
    else:
        log.warning(
            "Redis does not hold what PostgreSQL says the sync wrote: rebuilding every report",
            **figures,
        )
