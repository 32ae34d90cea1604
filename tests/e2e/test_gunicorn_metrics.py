"""Each API's metrics under gunicorn: /metrics, answered by one worker, sums them all."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.processes import running_gunicorn


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in metrics"
    return float(match.group(1))


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
