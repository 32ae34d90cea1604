"""The sync's figures in Redis (``SYNC_STATS_KEY``) and their Prometheus exposition.

The sync worker is not an HTTP server: each pass adds its figures to one Redis hash, and
the Reports API renders that hash on its ``/metrics`` (and ``/metrics/sync``). Whatever the
number of worker processes, the hash holds the sums of all of them. Pure: no Redis client.

Fields of the hash::

    passes_total:<kind>               passes that finished (kind: incremental, full)
    errors_total:<kind>               passes that failed
    documents_written_total           reports written, every pass
    documents_removed_total           reports of deleted users removed
    entries_processed_total           outbox entries processed
    checkups_written_total            check-ups in the reports written
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
from collections.abc import Iterable, Mapping

KINDS = ("incremental", "full")

#: Seconds; a full rebuild of a million check-ups takes about 15 s.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HISTOGRAMS = {"pass_duration_seconds": PASS_BUCKETS, "batch_duration_seconds": BATCH_BUCKETS}

_COUNTERS = (
    ("passes_total", "Sync passes that finished, by kind.", True),
    ("errors_total", "Sync passes that failed, by kind.", True),
    ("documents_written_total", "Reports written by the sync.", False),
    ("documents_removed_total", "Reports of deleted users removed by the sync.", False),
    ("entries_processed_total", "Outbox entries processed by incremental passes.", False),
    ("checkups_written_total", "Check-ups in the reports the sync wrote.", False),
)
_GAUGES = (
    ("last_run_at", "Unix time the last successful pass finished."),
    ("last_duration_seconds", "Duration of the last successful pass."),
    ("last_documents_written", "Reports written by the last successful pass."),
    (
        "last_lag_seconds",
        "Age of the oldest pending outbox entry when the last incremental pass began.",
    ),
    ("last_entries_processed", "Outbox entries processed by the last incremental pass."),
    ("last_full_rebuild_at", "Unix time the last full rebuild finished."),
    ("last_error_at", "Unix time of the last failed pass."),
)
_HISTOGRAM_HELP = {
    "pass_duration_seconds": "Duration of a sync pass, by kind.",
    "batch_duration_seconds": "Duration of one batch of a sync pass (claim, build, write).",
}


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def histogram_increments(
    histogram: str, kind: str, observations: Iterable[float]
) -> dict[str, float]:
    """The hash fields to increment for ``observations`` of ``histogram`` (by ``kind``)."""
    bounds = (*HISTOGRAMS[histogram], math.inf)
    increments: dict[str, float] = {}
    for seconds in observations:
        for bound in bounds:
            if seconds <= bound:
                field = f"h:{histogram}:{kind}:{_le(bound)}"
                increments[field] = increments.get(field, 0) + 1
        count_field = f"h:{histogram}:{kind}:count"
        sum_field = f"h:{histogram}:{kind}:sum"
        increments[count_field] = increments.get(count_field, 0) + 1
        increments[sum_field] = increments.get(sum_field, 0.0) + seconds
    return increments


def _number(raw: str | None) -> float:
    try:
        return float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0


def render_prometheus(stats: Mapping[str, str], prefix: str = "healthapp_sync_") -> str:
    """The Prometheus text exposition of the stored figures (empty before the first pass)."""
    if not stats:
        return ""
    lines: list[str] = []
    for name, help_text, by_kind in _COUNTERS:
        metric = prefix + name
        if by_kind:
            values = [(kind, stats.get(f"{name}:{kind}")) for kind in KINDS]
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{kind="{kind}"}} {_number(value)}' for kind, value in values]
        else:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines.append(f"{metric} {_number(stats.get(name))}")
    for name, help_text in _GAUGES:
        if name in stats:
            metric = prefix + name
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            lines.append(f"{metric} {_number(stats[name])}")
    for histogram, buckets in HISTOGRAMS.items():
        metric = prefix + histogram
        lines += [f"# HELP {metric} {_HISTOGRAM_HELP[histogram]}", f"# TYPE {metric} histogram"]
        for kind in KINDS:
            for bound in (*buckets, math.inf):
                value = _number(stats.get(f"h:{histogram}:{kind}:{_le(bound)}"))
                lines.append(f'{metric}_bucket{{kind="{kind}",le="{_le(bound)}"}} {value}')
            lines.append(
                f'{metric}_sum{{kind="{kind}"}} {_number(stats.get(f"h:{histogram}:{kind}:sum"))}'
            )
            count = _number(stats.get(f"h:{histogram}:{kind}:count"))
            lines.append(f'{metric}_count{{kind="{kind}"}} {count}')
    return "\n".join(lines) + "\n"
