"""The sync's figures, read from Redis, as Prometheus metrics of the Reports API.

A ``prometheus_client`` collector reads the stored hash (``domain.sync_stats``) each time
the metrics are scraped; the worker that wrote it serves no HTTP of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from healthapp.domain.sync_stats import (
    HISTOGRAMS,
    KINDS,
    REBUILD_REASONS,
    bucket_bound,
    histogram_field,
)

PREFIX = "healthapp_sync_"

#: ``(field, help, label)``: each a counter named ``PREFIX + field``, by ``kind`` (of pass)
#: or ``reason`` (of rebuild) or by nothing.
_COUNTERS = (
    ("passes_total", "Sync passes that finished, by kind.", "kind"),
    ("errors_total", "Sync passes that failed, by kind.", "kind"),
    ("documents_written_total", "Reports written by the sync.", None),
    ("documents_removed_total", "Reports of deleted users removed by the sync.", None),
    ("entries_processed_total", "Outbox entries processed by incremental passes.", None),
    ("checkups_written_total", "Check-ups in the reports the sync wrote.", None),
    (
        "automatic_rebuilds_total",
        "Full rebuilds the sync started by itself, by reason (redis_behind: Redis lost"
        " writes whose outbox rows were cleared).",
        "reason",
    ),
)
_LABEL_VALUES = {"kind": KINDS, "reason": REBUILD_REASONS}
#: ``(field, help)``: each a gauge, shown once a pass has set it.
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


def _number(raw: str | bytes | None) -> float:
    try:
        return float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0


class SyncStatsCollector(Collector):
    """The stored figures as metric families, read afresh by ``read`` at each collection."""

    def __init__(self, read: Callable[[], Mapping[str, str]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        """Every family; none before the first pass stored its figures."""
        stats = self._read()
        if not stats:
            return
        for name, help_text, label in _COUNTERS:
            if label is not None:
                counter = CounterMetricFamily(PREFIX + name, help_text, labels=[label])
                for value in _LABEL_VALUES[label]:
                    counter.add_metric([value], _number(stats.get(f"{name}:{value}")))
            else:
                counter = CounterMetricFamily(
                    PREFIX + name, help_text, value=_number(stats.get(name))
                )
            yield counter
        for name, help_text in _GAUGES:
            if name in stats:
                yield GaugeMetricFamily(PREFIX + name, help_text, value=_number(stats[name]))
        for histogram, bounds in HISTOGRAMS.items():
            family = HistogramMetricFamily(
                PREFIX + histogram, _HISTOGRAM_HELP[histogram], labels=["kind"]
            )
            for kind in KINDS:
                buckets = [
                    (le, _number(stats.get(histogram_field(histogram, kind, le))))
                    for le in map(bucket_bound, (*bounds, math.inf))
                ]
                # The count is the +Inf bucket's: every observation added one to both.
                family.add_metric(
                    [kind], buckets, _number(stats.get(histogram_field(histogram, kind, "sum")))
                )
            yield family


def sync_registry(read: Callable[[], Mapping[str, str]]) -> CollectorRegistry:
    """A registry of the sync's figures alone (the process's own metrics stay apart)."""
    registry = CollectorRegistry()
    registry.register(SyncStatsCollector(read))
    return registry


def render_prometheus(stats: Mapping[str, str]) -> str:
    """The Prometheus text exposition of ``stats`` (empty before the first pass)."""
    return generate_latest(sync_registry(lambda: stats)).decode()
