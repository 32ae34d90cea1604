"""Each API's metrics under gunicorn: /metrics, answered by one worker, sums them all; for
the bearer of METRICS_TOKEN only, or on METRICS_BIND's listener only (SPEC §14)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from healthapp.problems import PROBLEM_MEDIA_TYPE
from tests.processes import REPORTS_APP, free_port, running_gunicorn

TOKEN = "metrics-token-of-the-tests-" + "g" * 16
#: Ports for the metrics listeners, apart from those ``running_gunicorn`` picks its API's
#: from (nothing listens on a metrics port before gunicorn starts).
METRICS_PORTS = (18140, 18199)


def _metrics_bind() -> str:
    return f"127.0.0.1:{free_port(*METRICS_PORTS)}"


def _assert_refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM_MEDIA_TYPE


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in metrics"
    return float(match.group(1))


def _two_workers(
    database_url: str, tmp_path: Path, folder: Path, **metrics: str
) -> AbstractContextManager[str]:
    """The Core API under gunicorn with two one-thread workers sharing their figures in
    ``folder``, its metrics served as ``metrics`` say (a token or a bind)."""
    return running_gunicorn(
        database_url,
        tmp_path / "gunicorn.log",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="1",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        **metrics,
    )


@pytest.mark.slow
def test_counts_add_up_across_gunicorn_workers(database_url: str, tmp_path: Path):
    folder = tmp_path / "metrics"
    requests = 120
    with _two_workers(database_url, tmp_path, folder, METRICS_TOKEN=TOKEN) as base:

        def ping(_n: int) -> int:
            return httpx.get(f"{base}/healthz", headers={"Connection": "close"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(ping, range(requests))) == {200}
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}):
            refused = httpx.get(f"{base}/metrics", headers=headers)
            _assert_refused(refused, 401)
            assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        scraped = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200
        text = scraped.text
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


@pytest.mark.slow
def test_a_metrics_bind_serves_every_workers_figures_there_and_none_on_the_api(
    database_url: str, tmp_path: Path
):
    folder = tmp_path / "metrics"
    metrics_bind = _metrics_bind()
    requests = 60
    with _two_workers(database_url, tmp_path, folder, METRICS_BIND=metrics_bind) as base:
        for _ in range(requests):
            assert httpx.get(f"{base}/healthz", headers={"Connection": "close"}).is_success
        _assert_refused(httpx.get(f"{base}/metrics"), 404)
        listener = f"http://{metrics_bind}"
        _assert_refused(httpx.get(f"{listener}/healthz"), 404)
        # Fresh connections: both workers answer scrapes, and each shows every worker's sum.
        texts = [
            httpx.get(f"{listener}/metrics", headers={"Connection": "close"}).text
            for _ in range(10)
        ]
        per_worker = [_healthz_count(path) for path in sorted(folder.glob("counter_*.db"))]

    assert len([count for count in per_worker if count]) == 2, per_worker
    served = {
        _sample(
            text,
            "healthapp_http_requests_total",
            '{api="core",method="GET",route="/healthz",status="200"}',
        )
        for text in texts
    }
    assert served == {sum(per_worker)}
    assert sum(per_worker) >= requests


@pytest.mark.slow
def test_the_reports_api_serves_both_pages_on_its_bind_to_the_token_bearer(
    redis_url: str, redis_client: object, tmp_path: Path
):
    metrics_bind = _metrics_bind()
    with running_gunicorn(
        None,
        tmp_path / "reports.log",
        app=REPORTS_APP,
        REDIS_URL=redis_url,
        METRICS_BIND=metrics_bind,
        METRICS_TOKEN=TOKEN,
    ) as base:
        for path in ("/metrics", "/metrics/sync"):
            url = f"http://{metrics_bind}{path}"
            _assert_refused(httpx.get(url), 401)
            scraped = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert scraped.status_code == 200, scraped.text
            assert scraped.headers["Content-Type"].startswith("text/plain")
            _assert_refused(
                httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {TOKEN}"}), 404
            )
        assert (
            "healthapp_http_requests_total"
            in httpx.get(
                f"http://{metrics_bind}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
            ).text
        )


@pytest.mark.parametrize("bind", ["--bind", "same port"])
def test_gunicorn_refuses_a_metrics_bind_it_cannot_keep_apart(tmp_path: Path, bind: str):
    api_bind, metrics_bind = "127.0.0.1:18198", _metrics_bind()
    env = {**os.environ, "HEALTHAPP_ENV": "testing", "BIND": api_bind}
    env["METRICS_BIND"] = metrics_bind if bind == "--bind" else "127.0.0.2:18198"
    exe = shutil.which("gunicorn") or str(Path(sys.executable).with_name("gunicorn"))
    command = [exe, "-c", "python:healthapp.gunicorn_conf", "healthapp.app:create_app()"]
    if bind == "--bind":
        command += ["--bind", api_bind]
    finished = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert finished.returncode == 1
    expected = "not among gunicorn's binds" if bind == "--bind" else "a port of its own"
    assert expected in finished.stderr


def _healthz_count(path: Path) -> float:
    """The ``/healthz`` request count one worker wrote to its metrics file."""
    total = 0.0
    for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
        _metric, sample, labels, *_ = json.loads(key)
        if sample == "healthapp_http_requests_total" and labels.get("route") == "/healthz":
            total += value
    return total
