"""The sync's stored figures as Prometheus metric families (no servers)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from healthapp.domain.sync_stats import histogram_increments
from healthapp.reports.sync_metrics import render_prometheus

STORED = {
    "passes_total:incremental": "3",
    "errors_total:full": "1",
    "automatic_rebuilds_total:redis_behind": "2",
    "documents_written_total": "12",
    "last_run_at": "1764636000.5",
    "last_lag_seconds": "0.25",
    **{
        name: str(value)
        for name, value in histogram_increments(
            "batch_duration_seconds", "incremental", [0.003, 0.02, 0.02]
        ).items()
    },
}


def test_each_figure_is_a_family_of_its_type_with_its_labels():
    families = {f.name: f for f in text_string_to_metric_families(render_prometheus(STORED))}

    types = {name: family.type for name, family in families.items()}
    assert types == {
        "healthapp_sync_passes": "counter",
        "healthapp_sync_errors": "counter",
        "healthapp_sync_documents_written": "counter",
        "healthapp_sync_documents_removed": "counter",
        "healthapp_sync_entries_processed": "counter",
        "healthapp_sync_checkups_written": "counter",
        "healthapp_sync_automatic_rebuilds": "counter",
        # Gauges only once a pass has set them.
        "healthapp_sync_last_run_at": "gauge",
        "healthapp_sync_last_lag_seconds": "gauge",
        "healthapp_sync_pass_duration_seconds": "histogram",
        "healthapp_sync_batch_duration_seconds": "histogram",
    }
    passes = {s.labels["kind"]: s.value for s in families["healthapp_sync_passes"].samples}
    assert passes == {"incremental": 3, "full": 0}
    rebuilds = {
        s.labels["reason"]: s.value for s in families["healthapp_sync_automatic_rebuilds"].samples
    }
    assert rebuilds == {"redis_behind": 2, "redis_ahead": 0, "no_generation": 0, "old_layout": 0}
    assert families["healthapp_sync_last_run_at"].samples[0].value == 1764636000.5
    batches = {
        (s.name, s.labels.get("le")): s.value
        for s in families["healthapp_sync_batch_duration_seconds"].samples
        if s.labels["kind"] == "incremental"
    }
    assert batches["healthapp_sync_batch_duration_seconds_bucket", "0.005"] == 1
    assert batches["healthapp_sync_batch_duration_seconds_bucket", "0.025"] == 3
    assert batches["healthapp_sync_batch_duration_seconds_count", None] == 3
    assert batches["healthapp_sync_batch_duration_seconds_sum", None] == 0.043
