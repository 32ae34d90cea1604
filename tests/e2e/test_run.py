"""``healthapp run``: the three processes, an upload reaching the Reports API, and each
API's metrics summed over its gunicorn workers, on a metrics listener of each API's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from healthapp.domain.roles import Role
from healthapp.embedded import start_redis
from tests.factories import checkup_session, signed_in
from tests.processes import free_port, stop, wait_until_answering

pytestmark = pytest.mark.slow


def _requests_counted(metrics: str, route: str) -> float:
    pattern = rf'healthapp_http_requests_total\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


def test_run_starts_the_stack_and_sums_metrics_over_workers(api, database_url, tmp_path: Path):
    redis_server = start_redis(tmp_path / "redis")
    core_port = free_port(count=2)  # and the Reports API on the next one
    reports_port = core_port + 1
    core_metrics = free_port(18140, 18199)
    reports_metrics = core_metrics + 1
    instance = tmp_path / "instance"
    env = {
        **os.environ,
        "HEALTHAPP_ENV": "testing",
        "HEALTHAPP_INSTANCE_PATH": str(instance),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "SYNC_INTERVAL_SECONDS": "1",
        # One listener of its own for each API's metrics.
        "CORE_METRICS_BIND": f"127.0.0.1:{core_metrics}",
        "REPORTS_METRICS_BIND": f"127.0.0.1:{reports_metrics}",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("METRICS_DIR", None)
    operator, patient = api.user(Role.OPERATOR), api.user()
    items = checkup_session(patient.id, api.machine(), 7)
    log_path = tmp_path / "run.log"
    command = [
        *(str(Path(sys.executable).with_name("healthapp")), "run", "--workers", "2"),
        *("--core-port", str(core_port), "--reports-port", str(reports_port)),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        core = f"http://127.0.0.1:{core_port}"
        reports = f"http://127.0.0.1:{reports_port}"
        wait_until_answering(f"{core}/readyz", process, deadline)
        wait_until_answering(f"{reports}/readyz", process, deadline)
        # The stack's instance made its own key pair: its tokens come from its Core API.
        operator, patient = (signed_in(core, user) for user in (operator, patient))
        upload = httpx.post(
            f"{core}/api/v1/checkups/", json={"checkups": items}, headers=operator.headers
        )
        assert upload.status_code == 201, upload.text
        count = None
        while count != len(items) and time.monotonic() < deadline:
            time.sleep(0.3)
            report = httpx.get(
                f"{reports}/api/v1/users/{patient.username}/", headers=patient.headers
            )
            count = len(report.json()["checkups"]) if report.status_code == 200 else None
        assert count == len(items), log_path.read_text(errors="replace")[-3000:]

        # Fresh connections, so both workers answer some; /metrics must show them all.
        for _ in range(40):
            assert httpx.get(f"{reports}/healthz", headers={"Connection": "close"}).is_success
        for _ in range(5):
            metrics = httpx.get(f"http://127.0.0.1:{reports_metrics}/metrics").text
            assert _requests_counted(metrics, "/healthz") >= 40
        assert 'healthapp_sync_passes_total{kind="incremental"}' in metrics
        core_figures = httpx.get(f"http://127.0.0.1:{core_metrics}/metrics").text
        assert 'api="core"' in core_figures
        assert 'api="reports"' not in core_figures
        for base in (core, reports):  # not on the APIs' own addresses
            assert httpx.get(f"{base}/metrics").status_code == 404
    finally:
        stop(process)
        redis_server.stop()
    # Each API's workers wrote their figures into a folder of its own under the instance.
    for api_name in ("core", "reports"):
        assert list((instance / "metrics" / api_name).glob("counter_*.db")), api_name
