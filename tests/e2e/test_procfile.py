"""``honcho start`` runs the Procfile's four processes: an upload reaches the Reports API."""

from __future__ import annotations

import os
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

ROOT = Path(__file__).resolve().parents[2]
#: The metrics token of the stack (made up).
METRICS_TOKEN = "metrics-token-of-the-tests-" + "p" * 16


def test_procfile_processes_carry_an_upload_to_the_reports_api(
    api, database_url: str, tmp_path: Path
):
    redis_server = start_redis(tmp_path / "redis")
    core_port = free_port(count=2)  # and the Reports API on the next one
    reports_port = core_port + 1
    bin_dir = str(Path(sys.executable).parent)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "HEALTHAPP_ENV": "testing",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "CORE_BIND": f"127.0.0.1:{core_port}",
        "REPORTS_BIND": f"127.0.0.1:{reports_port}",
        "METRICS_DIR": str(tmp_path / "metrics"),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "SYNC_CONCURRENCY": "1",
        "SYNC_INTERVAL_SECONDS": "1",
        "LOG_JSON": "1",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    operator = api.user(Role.OPERATOR)
    patient = api.user()
    items = checkup_session(patient.id, api.machine(), 12)
    log_path = tmp_path / "honcho.log"
    with log_path.open("wb") as log:
        honcho = subprocess.Popen(
            [str(Path(bin_dir) / "honcho"), "start", "-d", str(ROOT), "-e", str(env_file)],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        core = f"http://127.0.0.1:{core_port}"
        reports = f"http://127.0.0.1:{reports_port}"
        wait_until_answering(f"{core}/readyz", honcho, deadline)
        wait_until_answering(f"{reports}/readyz", honcho, deadline)
        # The stack's instance made its own key pair: its tokens come from its Core API.
        operator, patient = (signed_in(core, user) for user in (operator, patient))

        upload = httpx.post(
            f"{core}/api/v1/checkups/",
            json={"checkups": items},
            headers={**operator.headers, "X-Request-ID": "procfile-upload-1"},
            timeout=30,
        )
        assert upload.status_code == 201, upload.text
        count = None
        while time.monotonic() < deadline:
            report = httpx.get(
                f"{reports}/api/v1/users/{patient.username}/", headers=patient.headers
            )
            if report.status_code == 200:
                count = len(report.json()["checkups"])
                if count == len(items):
                    break
            time.sleep(0.3)
        assert count == len(items), log_path.read_text(errors="replace")[-3000:]
        assert httpx.get(f"{reports}/metrics").status_code == 401
        scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        metrics = httpx.get(f"{reports}/metrics", headers=scrape).text
        assert 'healthapp_sync_passes_total{kind="incremental"}' in metrics
        running_log = log_path.read_text(errors="replace")
    finally:
        stop(honcho, group=True)
        redis_server.stop()
    output = log_path.read_text(errors="replace")
    for name in ("core.1", "reports.1", "worker.1", "beat.1"):
        assert f"{name} started" in output
    synced = [line for line in output.splitlines() if "worker.1" in line and "sync batch" in line]
    assert any("procfile-upload-1" in line for line in synced), synced
    # While it ran (a task cut short by the stop may log its loss, and is redelivered).
    assert "Traceback" not in running_log, running_log[-3000:]
