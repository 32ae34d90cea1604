"""``healthapp sync`` as a real process, killed or robbed of its Redis in the middle of a pass:
the next pass converges and ``healthapp sync --verify`` exits 0 (SPEC §8: a crash anywhere
loses nothing and duplicates nothing; readers never see a half-built store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis
from sqlalchemy import Engine, text

from healthapp.database import make_engine
from healthapp.domain.report_keys import CURRENT_GENERATION_KEY, users_index_key
from healthapp.extensions import make_redis
from healthapp.sync.passes import full_rebuild, run_incremental_sync
from tests.faults.conftest import (
    COMMAND_TIMEOUT_SECONDS,
    command_env,
    enqueue_all,
    healthapp_command,
    outbox_size,
    seed_patients,
)
from tests.faults.servers import OwnedRedis, wait_until

pytestmark = pytest.mark.slow

USERS = 1000
#: Small batches: a pass has many, so a test can stop it in the middle.
BATCH_SIZE = "5"
#: How many times a test may stop a pass and let it go on before it holds a batch.
STOP_ATTEMPTS = 200
#: How long the pass runs between two stops: well under a batch of ``BATCH_SIZE`` users,
#: and ``STOP_ATTEMPTS`` of them well under a whole pass.
STEP_SECONDS = 0.001


@pytest.fixture
def synced(fault_database: str, fault_engine: Engine, owned_redis: OwnedRedis) -> None:
    """``USERS`` patients with their reports synced, as a running deployment has them."""
    seed_patients(fault_engine, users=USERS, checkups_per_user=5, prefix="pat")
    client = make_redis(owned_redis.url)
    run_incremental_sync(engine=fault_engine, redis_client=client)
    client.close()


def change_every_user(engine: Engine) -> int:
    """A new check-up for every patient, queued for the sync; the outbox size."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,"
                " taken_at) SELECT gen_random_uuid(), u.id, m.id, 'heart_rate',"
                " jsonb_build_object('bpm', 77), now() FROM users u, machines m"
            )
        )
        enqueue_all(conn, prefix="pat")
    return outbox_size(engine)


def start_sync(database_url: str, redis_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "healthapp.cli", "sync", "--batch-size", BATCH_SIZE, *args],
        env=command_env(database_url, redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_mid_pass(process: subprocess.Popen[str], passed_a_batch: Callable[[], bool]) -> None:
    """Wait until ``process`` has finished a batch and still runs, then SIGSTOP it."""
    wait_until(
        lambda: passed_a_batch() or process.poll() is not None,
        timeout=COMMAND_TIMEOUT_SECONDS,
        interval=0.01,
        what="the sync to finish a batch",
    )
    os.kill(process.pid, signal.SIGSTOP)
    assert process.poll() is None, "the pass ended before it could be interrupted"


def locked_outbox_rows(engine: Engine) -> int:
    """Outbox rows a pass has claimed and not yet committed (locked by its transaction)."""
    with engine.begin() as conn:
        total, free = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM report_outbox), (SELECT count(*) FROM"
                " (SELECT id FROM report_outbox FOR UPDATE SKIP LOCKED) AS unlocked)"
            )
        ).one()
    return int(total) - int(free)


def stop_holding_a_batch(process: subprocess.Popen[str], engine: Engine) -> None:
    """SIGSTOP ``process`` at a moment it holds a claimed batch (it may be between two)."""
    for _attempt in range(STOP_ATTEMPTS):
        if locked_outbox_rows(engine):
            return
        os.kill(process.pid, signal.SIGCONT)
        # Let it run a moment: stopped again at once, a pass caught between two batches
        # may get no CPU time at all and still be between them at every attempt.
        time.sleep(STEP_SECONDS)
        assert process.poll() is None, "the pass ended before it held a batch at a stop"
        os.kill(process.pid, signal.SIGSTOP)
    raise AssertionError(f"the pass held no batch at any of {STOP_ATTEMPTS} stops")


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=COMMAND_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise
    return process.returncode, output


def assert_converges(database_url: str, redis_url: str, *, full: bool = False) -> None:
    """The next pass (the worker's, here in-process) converges: ``healthapp sync --verify``
    then finds every report right."""
    engine = make_engine(database_url)
    client = make_redis(redis_url)
    try:
        if full:
            full_rebuild(engine=engine, redis_client=client)
        run_incremental_sync(engine=engine, redis_client=client)
    finally:
        client.close()
        engine.dispose()
    verified = healthapp_command("sync", "--verify", database_url=database_url, redis_url=redis_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"verified {USERS} users: 0 missing, 0 stale, 0 orphaned" in verified.stdout


def generation_index_size(client: redis.Redis, generation: int) -> int:
    return int(client.zcard(users_index_key(generation)))


def current(client: redis.Redis) -> int | None:
    value = client.get(CURRENT_GENERATION_KEY)
    return int(value) if value is not None else None


@pytest.mark.usefixtures("synced")
def test_incremental_pass_killed_mid_batch_converges(
    fault_database: str, fault_engine: Engine, owned_redis: OwnedRedis
):
    pending = change_every_user(fault_engine)
    process = start_sync(fault_database, owned_redis.url)
    try:
        stop_mid_pass(process, lambda: outbox_size(fault_engine) < pending)
        stop_holding_a_batch(process, fault_engine)
    finally:
        process.kill()  # SIGKILL, while it holds a claimed batch
        returncode, _output = finish(process)
    assert returncode == -signal.SIGKILL
    assert 0 < outbox_size(fault_engine) < pending

    assert_converges(fault_database, owned_redis.url)
    assert outbox_size(fault_engine) == 0


@pytest.mark.usefixtures("synced")
def test_full_rebuild_killed_mid_way_leaves_readers_on_the_old_generation(
    fault_database: str, owned_redis: OwnedRedis
):
    client = make_redis(owned_redis.url)
    before = current(client)
    assert before is not None
    process = start_sync(fault_database, owned_redis.url, "--full")
    try:
        stop_mid_pass(process, lambda: generation_index_size(client, before + 1) > 0)
    finally:
        process.kill()
        returncode, _output = finish(process)
    assert returncode == -signal.SIGKILL
    assert 0 < generation_index_size(client, before + 1) < USERS
    assert current(client) == before  # readers still see the complete old generation

    assert_converges(fault_database, owned_redis.url, full=True)
    after = current(client)
    assert after is not None
    assert after > before + 1
    generations = {key.split(b":")[1] for key in client.scan_iter(match="rpt:g*", count=1000)}
    assert generations == {f"g{after}".encode()}, "the killed rebuild's keys were left behind"
    client.close()


@pytest.mark.usefixtures("synced")
def test_redis_restarted_mid_incremental_pass_converges(
    fault_database: str, fault_engine: Engine, owned_redis: OwnedRedis
):
    pending = change_every_user(fault_engine)
    process = start_sync(fault_database, owned_redis.url)
    try:
        stop_mid_pass(process, lambda: outbox_size(fault_engine) < pending)
        owned_redis.restart()  # empty: no persistence
    finally:
        os.kill(process.pid, signal.SIGCONT)
        finish(process)  # it may fail or finish into a generation Redis no longer names

    assert_converges(fault_database, owned_redis.url)
    assert outbox_size(fault_engine) == 0


@pytest.mark.usefixtures("synced")
def test_redis_restarted_mid_full_rebuild_converges(fault_database: str, owned_redis: OwnedRedis):
    client = make_redis(owned_redis.url)
    before = current(client)
    assert before is not None
    process = start_sync(fault_database, owned_redis.url, "--full")
    try:
        stop_mid_pass(process, lambda: generation_index_size(client, before + 1) > 0)
        owned_redis.restart()  # the batches written so far are gone
    finally:
        os.kill(process.pid, signal.SIGCONT)
        returncode, output = finish(process)
    client.close()
    # The rebuild must not point readers at a generation missing the reports it lost.
    assert returncode == 1, output
    assert "Redis lost" in output, output

    assert_converges(fault_database, owned_redis.url)
