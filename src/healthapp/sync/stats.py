"""What a sync pass did: counted per batch, logged, and added to the figures in Redis.

The figures' hash is laid out in ``healthapp.domain.sync_stats``; the Reports API serves it
as Prometheus metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import redis
import structlog

from healthapp.domain.report_codec import ReportDocument
from healthapp.domain.report_keys import SYNC_STATS_KEY
from healthapp.domain.sync_stats import histogram_increments

log = structlog.get_logger("healthapp.sync")


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
    #: Why a rebuild was started by the sync itself (``watermark``); ``None`` when asked for.
    reason: str | None = None
    usernames: list[str] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)

    def count_batch(
        self, reports: dict[str, ReportDocument | None], *, entries: int, seconds: float
    ) -> None:
        """Add a written batch: its reports, the outbox ``entries`` it stood for, its time."""
        self.batches += 1
        self.entries_processed += entries
        self.batch_seconds.append(seconds)
        for username, document in reports.items():
            self.usernames.append(username)
            if document is None:
                self.documents_removed += 1
            else:
                self.documents_written += 1
                self.checkups_written += document.meta["count"]


@contextmanager
def recorded(stats: SyncStats, *, redis_client: redis.Redis) -> Iterator[SyncStats]:
    """Time the pass run inside, then log it and keep its figures, whether it failed or not."""
    started = time.perf_counter()
    try:
        yield stats
    except Exception as error:
        stats.duration_seconds = time.perf_counter() - started
        _record(redis_client, stats, error=error)
        raise
    stats.duration_seconds = time.perf_counter() - started
    _record(redis_client, stats)


def _record(redis_client: redis.Redis, stats: SyncStats, *, error: Exception | None = None) -> None:
    """Log the pass (never a health value) and keep its figures in Redis for the metrics."""
    if error is None and stats.skipped:
        return
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
    if stats.reason is not None:
        figures["reason"] = stats.reason
    if error is not None:
        log.error("sync pass failed", error=type(error).__name__, **figures)
    else:
        log.info("sync pass", **figures)
    with suppress(redis.RedisError):
        _store_figures(redis_client, stats, failed=error is not None)


def _store_figures(redis_client: redis.Redis, stats: SyncStats, *, failed: bool) -> None:
    """Add the pass's figures to the stats hash the Reports API serves as metrics."""
    pipe = redis_client.pipeline(transaction=False)
    now = time.time()
    kind = stats.kind
    increments: dict[str, float] = {}
    if stats.reason is not None:  # counted when it starts, whether it then fails or not
        increments[f"automatic_rebuilds_total:{stats.reason}"] = 1
    if failed:
        increments[f"errors_total:{kind}"] = 1
        pipe.hset(SYNC_STATS_KEY, "last_error_at", now)
    else:
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
