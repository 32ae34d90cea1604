"""The Celery worker with beat, as ``healthapp run`` starts it, across a Redis restart that
empties Redis (its broker, its beat schedule and every report): with nobody touching it, the
scheduled passes rebuild the reports and carry the changes made meanwhile (SPEC §8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from healthapp.database import make_engine
from healthapp.extensions import make_redis
from healthapp.sync.verify import verify
from tests.faults.conftest import healthapp_command, outbox_size, running_worker, seed_patients
from tests.faults.servers import OwnedRedis, wait_until

pytestmark = pytest.mark.slow

USERS = 50
#: Long enough for the worker to start, reconnect and run a few passes on a loaded machine.
CONVERGENCE_SECONDS = 45


@pytest.fixture
def worker(fault_database: str, owned_redis: OwnedRedis, tmp_path: Path) -> Iterator[Path]:
    """``celery worker -B`` on the test's stores, passes every second; its log's path."""
    log_path = tmp_path / "worker.log"
    with running_worker(fault_database, owned_redis.url, log_path):
        yield log_path


def converged(database_url: str, redis_url: str) -> bool:
    """Every report in Redis matches PostgreSQL and nothing waits in the outbox."""
    engine = make_engine(database_url)
    client = make_redis(redis_url)
    try:
        return outbox_size(engine) == 0 and verify(engine=engine, redis_client=client).clean
    except Exception:  # Redis or the worker still coming back: not yet
        return False
    finally:
        client.close()
        engine.dispose()


def test_worker_converges_after_redis_restarts_empty(
    fault_database: str, fault_engine: Engine, owned_redis: OwnedRedis, worker: Path
):
    seed_patients(fault_engine, users=USERS, checkups_per_user=3, prefix="wrk")
    wait_until(
        lambda: converged(fault_database, owned_redis.url),
        timeout=CONVERGENCE_SECONDS,
        interval=0.3,
        what="the worker's first passes",
    )

    # Down for a while (beat ticks meet no Redis), then back empty: no persistence, so the
    # broker queue, the beat lock and schedule, and every report are gone.
    owned_redis.kill()
    wait_until(
        lambda: "tick skipped" in worker.read_text(errors="replace"),
        timeout=CONVERGENCE_SECONDS,
        what="beat to meet the missing Redis",
    )
    seed_patients(fault_engine, users=USERS, checkups_per_user=2, prefix="new")
    owned_redis.start()

    wait_until(
        lambda: converged(fault_database, owned_redis.url),
        timeout=CONVERGENCE_SECONDS,
        interval=0.3,
        what="the worker to rebuild the reports after the restart",
    )
    verified = healthapp_command(
        "sync", "--verify", database_url=fault_database, redis_url=owned_redis.url
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"verified {2 * USERS} users: 0 missing" in verified.stdout
    # Beat lived through it (Celery itself may log the broker's reconnection with a trace).
    log = worker.read_text(errors="replace")
    assert "Process Beat" not in log, log[-3000:]
    assert "LockNotOwnedError" not in log, log[-3000:]
