"""A real Celery worker with redbeat against real Redis runs the sync on schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from healthapp.audit.stream import publish_report_read
from healthapp.embedded import start_redis
from healthapp.extensions import make_redis
from healthapp.reports.store import ReportStore
from healthapp.request_context import Actor
from healthapp.supervisor import worker_with_beat_command
from tests.factories import audit_events, insert_checkups
from tests.sync.conftest import read_all


@pytest.mark.slow
def test_worker_with_beat_runs_the_scheduled_sync(api, engine, database_url, tmp_path: Path):
    server = start_redis(tmp_path / "broker")
    client = make_redis(server.url)
    env = {
        **os.environ,
        "HEALTHAPP_ENV": "testing",
        "DATABASE_URL": database_url,
        "REDIS_URL": server.url,
        "SYNC_INTERVAL_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        worker_with_beat_command("WARNING"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        user = api.user()
        insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=7)
        store = ReportStore(client)
        deadline = time.monotonic() + 45
        page = None
        while time.monotonic() < deadline and worker.poll() is None:
            page = read_all(store, user.username)
            if page is not None and page.meta["count"] == 7:
                break
            time.sleep(0.3)
        assert page is not None, "the scheduled sync never wrote the report"
        assert page.meta["count"] == 7

        # A report read waiting in the audit stream reaches PostgreSQL by the schedule too.
        reader = Actor(id=user.id, username=user.username, role="patient")
        publish_report_read(client, reader, user.username, "read-by-beat")
        while time.monotonic() < deadline and not audit_events(engine, request_id="read-by-beat"):
            time.sleep(0.3)
        assert [e["subject_username"] for e in audit_events(engine, request_id="read-by-beat")] == [
            user.username
        ]

        # A later change arrives by the schedule alone, too.
        insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=2)
        while time.monotonic() < deadline:
            page = read_all(store, user.username)
            if page is not None and page.meta["count"] == 9:
                break
            time.sleep(0.3)
        assert page is not None
        assert page.meta["count"] == 9
        assert int(client.hget("rpt:sync:stats", "passes_total:incremental") or 0) >= 2
    finally:
        # SIGTERM to the main process, as an init system stops it: a warm shutdown that lets
        # a running sync finish. Signalled directly, the pool child would die mid-task.
        worker.send_signal(signal.SIGTERM)
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            output, _ = worker.communicate()
        client.close()
        server.stop()
    assert b"Traceback" not in output, output.decode(errors="replace")[-3000:]
