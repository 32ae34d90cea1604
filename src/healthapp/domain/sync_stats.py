"""The sync's figures in Redis (``SYNC_STATS_KEY``): the fields each pass adds to.

The sync worker is not an HTTP server: each pass adds its figures to one Redis hash, and
the Reports API serves that hash as Prometheus metrics on its ``/metrics`` (and
``/metrics/sync``). Whatever the number of worker processes, the hash holds the sums of all
of them. Pure: no Redis client.

Fields of the hash::

    passes_total:<kind>               passes that finished (kind: incremental, full)
    errors_total:<kind>               passes that failed
    documents_written_total           reports written, every pass
    documents_removed_total           reports of deleted users removed
    entries_processed_total           outbox entries processed
    checkups_written_total            check-ups in the reports written
    automatic_rebuilds_total:<reason> full rebuilds the sync started by itself (reason:
                                      redis_behind, redis_ahead, no_generation, old_layout)
    last_run_at                       Unix time the last successful pass finished
    last_duration_seconds             its duration
    last_documents_written            reports it wrote
    last_lag_seconds                  age of the oldest outbox entry when the last
                                      incremental pass began (0 when the outbox was empty)
    last_entries_processed            outbox entries the last incremental pass processed
    last_full_rebuild_at              Unix time the last full rebuild finished
    last_error_at                     Unix time of the last failed pass
    h:<histogram>:<kind>:<le>         histogram bucket counts (cumulative, as Prometheus)
    h:<histogram>:<kind>:sum          sum of the observed seconds
    h:<histogram>:<kind>:count        number of observations
"""

from __future__ import annotations

import math
from collections.abc import Iterable

KINDS = ("incremental", "full")
# Why the sync rebuilt every report by itself (``healthapp.sync.watermark``): Redis lost
# writes PostgreSQL had committed, Redis is ahead of a restored PostgreSQL, Redis holds no
# reports (a first start), the reports are of an older layout.
REDIS_BEHIND = "redis_behind"
REDIS_AHEAD = "redis_ahead"
NO_GENERATION = "no_generation"
OLD_LAYOUT = "old_layout"
REBUILD_REASONS = (REDIS_BEHIND, REDIS_AHEAD, NO_GENERATION, OLD_LAYOUT)

#: Seconds; a full rebuild of a million check-ups takes about 15 s.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HISTOGRAMS = {"pass_duration_seconds": PASS_BUCKETS, "batch_duration_seconds": BATCH_BUCKETS}


def bucket_bound(bound: float) -> str:
    """A bucket's upper bound as its field names it (and Prometheus's ``le`` label)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def histogram_field(histogram: str, kind: str, part: str) -> str:
    """The field of ``histogram``'s ``part`` (a bucket bound, ``sum`` or ``count``)."""
    return f"h:{histogram}:{kind}:{part}"


def histogram_increments(
    histogram: str, kind: str, observations: Iterable[float]
) -> dict[str, float]:
    """The hash fields to increment for ``observations`` of ``histogram`` (by ``kind``)."""
    bounds = (*HISTOGRAMS[histogram], math.inf)
    increments: dict[str, float] = {}
    for seconds in observations:
        for bound in bounds:
            if seconds <= bound:
                field = histogram_field(histogram, kind, bucket_bound(bound))
                increments[field] = increments.get(field, 0) + 1
        count_field = histogram_field(histogram, kind, "count")
        sum_field = histogram_field(histogram, kind, "sum")
        increments[count_field] = increments.get(count_field, 0) + 1
        increments[sum_field] = increments.get(sum_field, 0.0) + seconds
    return increments
