"""Prometheus metrics: upload item counters and the sync's figures."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from healthapp import config
from healthapp.domain.roles import Role
from healthapp.domain.sync_stats import histogram_increments
from healthapp.reports.app import create_app as create_reports_app
from healthapp.reports.sync_metrics import render_prometheus
from healthapp.sync import passes as sync_service
from healthapp.sync.passes import full_rebuild, run_incremental_sync
from tests.factories import checkup_item, checkup_session, insert_checkups


def _items(outcome: str) -> float:
    value = REGISTRY.get_sample_value("healthapp_checkup_upload_items_total", {"outcome": outcome})
    return value or 0.0


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in metrics"
    return float(match.group(1))


def test_upload_counts_created_duplicate_and_rejected_items(api):
    operator = api.user(Role.OPERATOR)
    patient = api.user()
    machine = api.machine()
    before = {outcome: _items(outcome) for outcome in ("created", "duplicate", "rejected")}
    items = checkup_session(patient.id, machine, 4)

    assert api.post("/api/v1/checkups/", operator, json={"checkups": items}).status_code == 201
    retry = [*items[:2], checkup_session(patient.id, machine, 1, start_minute=99)[0]]
    assert api.post("/api/v1/checkups/", operator, json={"checkups": retry}).status_code == 201
    bad = checkup_item(patient.id, machine, information={"systolic": 10, "diastolic": 5})
    good = checkup_session(patient.id, machine, 2, start_minute=200)
    batch = api.post("/api/v1/checkups/?mode=batch", operator, json={"checkups": [bad, *good]})
    assert batch.status_code == 201
    atomic = api.post("/api/v1/checkups/", operator, json={"checkups": [bad, *good]})
    assert atomic.status_code == 422

    assert _items("created") - before["created"] == 4 + 1 + 2
    assert _items("duplicate") - before["duplicate"] == 2
    assert _items("rejected") - before["rejected"] == 1 + 3


#: The metrics token of the Reports API these tests read (made up).
METRICS_TOKEN = "metrics-token-of-the-tests-" + "o" * 16


class MetricsReader:
    """Reads a Reports API's metrics pages as Prometheus does, with the metrics token."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, path: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})


@pytest.fixture
def reports(redis_url: str, redis_client: Any) -> MetricsReader:
    settings = config.Testing()
    settings.DATABASE_URL = None
    settings.REDIS_URL = redis_url
    settings.METRICS_TOKEN = SecretStr(METRICS_TOKEN)
    return MetricsReader(create_reports_app(settings).test_client())


def test_reports_metrics_include_the_sync_figures(api, engine, redis_client, reports):
    user = api.user()
    insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=5)
    first = run_incremental_sync(engine=engine, redis_client=redis_client)
    insert_checkups(engine, user_id=api.user().id, machine_id=api.machine(), count=2)
    second = run_incremental_sync(engine=engine, redis_client=redis_client, batch_size=1)

    text = reports.get("/metrics").get_data(as_text=True)

    assert "healthapp_http_requests_total" in text  # the process's own metrics stay
    # The first pass rebuilt everything (no generation yet), then ran incrementally.
    assert _sample(text, "healthapp_sync_passes_total", '{kind="full"}') == 1
    assert _sample(text, "healthapp_sync_passes_total", '{kind="incremental"}') == 2
    written = _sample(text, "healthapp_sync_documents_written_total")
    assert written >= first.documents_written + second.documents_written
    assert _sample(text, "healthapp_sync_last_entries_processed") == second.entries_processed
    assert _sample(text, "healthapp_sync_last_lag_seconds") == pytest.approx(
        second.lag_seconds, abs=1e-6
    )
    assert _sample(text, "healthapp_sync_pass_duration_seconds_count", '{kind="incremental"}') == 2
    assert _sample(text, "healthapp_sync_batch_duration_seconds_count", '{kind="incremental"}') == (
        first.batches + second.batches
    )
    inf = _sample(
        text, "healthapp_sync_pass_duration_seconds_bucket", '{kind="incremental",le="+Inf"}'
    )
    assert inf == 2
    assert _sample(text, "healthapp_sync_errors_total", '{kind="incremental"}') == 0
    # The same figures alone on /metrics/sync.
    alone = reports.get("/metrics/sync").get_data(as_text=True)
    assert "healthapp_http_requests_total" not in alone
    assert _sample(alone, "healthapp_sync_passes_total", '{kind="incremental"}') == 2


def test_failed_pass_counts_an_error(api, engine, redis_client, reports, monkeypatch):
    insert_checkups(engine, user_id=api.user().id, machine_id=api.machine(), count=1)
    full_rebuild(engine=engine, redis_client=redis_client)
    insert_checkups(engine, user_id=api.user().id, machine_id=api.machine(), count=1)

    def broken(**_kwargs: Any) -> None:
        raise RuntimeError("redis write failed")

    monkeypatch.setattr(sync_service, "write_reports", broken)
    with pytest.raises(RuntimeError):
        run_incremental_sync(engine=engine, redis_client=redis_client)

    text = reports.get("/metrics").get_data(as_text=True)
    assert _sample(text, "healthapp_sync_errors_total", '{kind="incremental"}') == 1
    assert "healthapp_sync_last_error_at" in text


def test_histogram_buckets_are_cumulative():
    fields = histogram_increments("pass_duration_seconds", "full", [0.3, 7.0])
    text = render_prometheus({name: str(value) for name, value in fields.items()})
    bucket = "healthapp_sync_pass_duration_seconds_bucket"
    assert _sample(text, bucket, '{kind="full",le="0.25"}') == 0
    assert _sample(text, bucket, '{kind="full",le="0.5"}') == 1
    assert _sample(text, bucket, '{kind="full",le="10.0"}') == 2
    assert _sample(text, bucket, '{kind="full",le="+Inf"}') == 2
    assert _sample(text, "healthapp_sync_pass_duration_seconds_sum", '{kind="full"}') == 7.3
    assert render_prometheus({}) == ""
