"""Prometheus metrics: upload item counters, the sync's figures, and gunicorn workers' sums."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict

from healthapp import config
from healthapp.domain.roles import Role
from healthapp.domain.sync_stats import histogram_increments
from healthapp.reports.app import create_app as create_reports_app
from healthapp.reports.sync_metrics import render_prometheus
from healthapp.sync import passes as sync_service
from healthapp.sync.passes import full_rebuild, run_incremental_sync
from tests.checkups.test_e2e import running_gunicorn
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


@pytest.fixture
def reports(redis_url: str, redis_client: Any) -> Any:
    settings = config.Testing()
    settings.DATABASE_URL = None
    settings.REDIS_URL = redis_url
    return create_reports_app(settings).test_client()


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


@pytest.mark.slow
def test_counts_add_up_across_gunicorn_workers(database_url: str, tmp_path: Path):
    folder = tmp_path / "metrics"
    requests = 120
    with running_gunicorn(
        database_url,
        tmp_path / "gunicorn.log",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="1",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    ) as base:

        def ping(_n: int) -> int:
            return httpx.get(f"{base}/healthz", headers={"Connection": "close"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(ping, range(requests))) == {200}
        text = httpx.get(f"{base}/metrics").text
        per_worker = [_healthz_count(path) for path in sorted(folder.glob("counter_*.db"))]

    served = _sample(
        text,
        "healthapp_http_requests_total",
        '{api="core",method="GET",route="/healthz",status="200"}',
    )
    # Both workers answered some, and /metrics (answered by one of them) shows the sum.
    assert len([count for count in per_worker if count]) == 2, per_worker
    assert served == sum(per_worker)
    # Readiness polls before the test's own requests count too.
    assert requests <= served <= requests + 300


def _healthz_count(path: Path) -> float:
    """The ``/healthz`` request count one worker wrote to its metrics file."""
    total = 0.0
    for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
        _metric, sample, labels, *_ = json.loads(key)
        if sample == "healthapp_http_requests_total" and labels.get("route") == "/healthz":
            total += value
    return total
