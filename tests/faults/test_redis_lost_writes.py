"""Redis with an append-only file fsynced once a second (``appendfsync everysec``), killed
having lost its last writes after the sync had cleared their outbox rows: the Celery worker,
with nobody touching it, finds Redis behind PostgreSQL's sync watermark and rebuilds the
reports, and ``healthapp sync --verify`` exits 0 (SPEC §14).

Losing the last second of writes is played exactly: the append-only file is copied at one
moment, more check-ups are uploaded and synced (the outbox is empty again), the server is
killed with SIGKILL and started again on the copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from healthapp.domain.report_keys import SYNC_STATS_KEY
from healthapp.domain.roles import Role
from healthapp.extensions import make_redis
from healthapp.sync.verify import verify
from tests.factories import ApiClient, checkup_session
from tests.faults.conftest import healthapp_command, outbox_size, running_worker
from tests.faults.servers import OwnedRedis, wait_until
from tests.faults.test_worker_redis_restart import CONVERGENCE_SECONDS, converged

pytestmark = pytest.mark.slow

PATIENTS = 20
CHECKUPS_PER_UPLOAD = 12


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[OwnedRedis]:
    server = OwnedRedis(tmp_path / "redis", appendonly=True)
    yield server
    server.close()


def upload(api: ApiClient, operator: Any, patients: list[Any], machine: Any, minute: int) -> None:
    """A session of check-ups for each patient, through the Core API."""
    for patient in patients:
        items = checkup_session(patient.id, machine, CHECKUPS_PER_UPLOAD, start_minute=minute)
        response = api.post("/api/v1/checkups/", operator, json={"checkups": items})
        assert response.status_code == 201, response.json


def sync(database_url: str, redis_url: str) -> None:
    """``healthapp sync``: one incremental pass, as a process."""
    done = healthapp_command("sync", database_url=database_url, redis_url=redis_url)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_worker_rebuilds_what_redis_lost_after_the_outbox_was_cleared(
    fault_database: str,
    fault_engine: Engine,
    fault_api: ApiClient,
    persistent_redis: OwnedRedis,
    tmp_path: Path,
):
    redis_url = persistent_redis.url
    operator = fault_api.user(Role.OPERATOR)
    machine = fault_api.machine("heart_rate")
    patients = [fault_api.user() for _ in range(PATIENTS)]
    upload(fault_api, operator, patients, machine, minute=0)
    sync(fault_database, redis_url)
    assert converged(fault_database, redis_url)
    saved = persistent_redis.copy_append_only_file(tmp_path / "appendonly-at-first-sync.aof")

    # The last second before the crash: new check-ups and a new patient, synced, and their
    # outbox rows deleted. Then Redis dies and comes back without them.
    upload(fault_api, operator, patients[: PATIENTS // 2], machine, minute=1000)
    newcomer = fault_api.user()
    upload(fault_api, operator, [newcomer], machine, minute=2000)
    sync(fault_database, redis_url)
    assert outbox_size(fault_engine) == 0
    persistent_redis.kill()
    persistent_redis.put_back_append_only_file(saved)
    persistent_redis.start()

    client = make_redis(redis_url)
    try:
        lost = verify(engine=fault_engine, redis_client=client)
        assert sorted(lost.stale) == sorted(p.username for p in patients[: PATIENTS // 2])
        assert lost.missing == [newcomer.username]
        assert lost.behind is not None, "Redis came back with its watermark"
        assert outbox_size(fault_engine) == 0  # nothing in PostgreSQL asks for them again

        log_path = tmp_path / "worker.log"
        with running_worker(fault_database, redis_url, log_path):
            wait_until(
                lambda: converged(fault_database, redis_url),
                timeout=CONVERGENCE_SECONDS,
                interval=0.3,
                what="the worker to rebuild what Redis lost",
            )

        verified = healthapp_command(
            "sync", "--verify", database_url=fault_database, redis_url=redis_url
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"verified {PATIENTS + 2} users: 0 missing, 0 stale, 0 orphaned" in verified.stdout
        log = log_path.read_text(errors="replace")
        assert "Redis does not hold what PostgreSQL says the sync wrote" in log, log[-3000:]
        assert "redis_behind" in log
        stats = client.hgetall(SYNC_STATS_KEY)
        assert stats[b"automatic_rebuilds_total:redis_behind"] == b"1"
    finally:
        client.close()
