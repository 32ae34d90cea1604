"""The sync under failure: a pass killed mid-way, Redis down (SPEC §8: lose nothing)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from healthapp.domain.roles import Role
from healthapp.embedded import start_redis
from healthapp.extensions import make_redis
from healthapp.reports.store import ReportStore
from healthapp.sync.passes import full_rebuild, run_incremental_sync
from healthapp.sync.verify import verify
from healthapp.sync.writer import StoreLostError, current_generation
from tests.factories import delete_checkup, insert_checkups
from tests.sync.conftest import read_all

KILLED_BETWEEN_WRITE_AND_DELETE = textwrap.dedent(
    """
    import os, signal, sys
    from healthapp.database import make_engine
    from healthapp.extensions import make_redis
    from healthapp.sync import passes

    def killed(**_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    passes.delete_outbox_entries = killed
    passes.run_incremental_sync(
        engine=make_engine(sys.argv[1]), redis_client=make_redis(sys.argv[2])
    )
    """
)


def outbox_size(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM report_outbox")).scalar_one())


def test_pass_killed_between_redis_write_and_outbox_delete_converges(
    api, engine, database_url, redis_url, redis_client, sync, store
):
    user = api.user()
    machine = api.machine()
    ids = insert_checkups(engine, user_id=user.id, machine_id=machine, count=20)
    sync()
    delete_checkup(engine, ids[0])
    insert_checkups(engine, user_id=user.id, machine_id=machine, count=3)
    pending = outbox_size(engine)

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BETWEEN_WRITE_AND_DELETE, database_url, redis_url],
        check=False,
        timeout=60,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )

    assert killed.returncode == -9
    assert outbox_size(engine) == pending  # the claim died with the process
    stats = sync()
    assert stats.entries_processed == pending
    assert outbox_size(engine) == 0
    page = read_all(store, user.username)
    assert page is not None
    assert page.meta["count"] == 22
    assert len({r[0] for r in page.records}) == 22
    assert verify(engine=engine, redis_client=redis_client).clean


def test_pass_failing_before_the_delete_leaves_the_outbox(api, engine, sync, monkeypatch):
    from healthapp.sync import passes

    user = api.user()
    insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=2)
    pending = outbox_size(engine)

    def fail(**_kwargs: Any) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(passes, "delete_outbox_entries", fail)
    with pytest.raises(RuntimeError):
        sync()
    assert outbox_size(engine) == pending
    monkeypatch.undo()
    sync()
    assert outbox_size(engine) == 0


def test_deletes_made_while_redis_is_down_arrive_after(api, engine, tmp_path: Path):
    admin = api.user(Role.ADMIN)
    gone, kept = api.user(), api.user()
    machine = api.machine()
    insert_checkups(engine, user_id=gone.id, machine_id=machine, count=3)
    kept_ids = insert_checkups(engine, user_id=kept.id, machine_id=machine, count=3)
    server = start_redis(tmp_path / "redis-down")
    client = make_redis(server.url, timeout_seconds=1, retries=0)
    run_incremental_sync(engine=engine, redis_client=client)
    server.server.shutdown(save=True)

    # Deletes while Redis is down: a check-up and a whole user.
    delete_checkup(engine, kept_ids[0])
    assert api.delete(f"/api/v1/users/{gone.id}", admin).status_code == 204
    with pytest.raises(redis.ConnectionError):
        run_incremental_sync(engine=engine, redis_client=client)
    assert outbox_size(engine) == 2

    server = start_redis(tmp_path / "redis-down")
    client = make_redis(server.url, timeout_seconds=1, retries=0)
    try:
        run_incremental_sync(engine=engine, redis_client=client)
        store = ReportStore(client)
        assert read_all(store, gone.username) is None
        page = read_all(store, kept.username)
        assert page is not None
        assert [r[0] for r in page.records] == [str(i) for i in kept_ids[1:]]
        assert verify(engine=engine, redis_client=client).clean
        assert outbox_size(engine) == 0
    finally:
        client.close()
        with contextlib.suppress(redis.RedisError):
            server.stop()


def test_redis_emptied_during_a_full_rebuild_is_not_switched_to(api, engine, redis_client):
    """A Redis that restarts empty half-way through a rebuild still takes the later batches;
    the rebuild must not point readers at that half generation (nothing would repair it)."""
    machine = api.machine()
    for _ in range(3):
        insert_checkups(engine, user_id=api.user().id, machine_id=machine, count=2)
    run_incremental_sync(engine=engine, redis_client=redis_client)
    batches = []

    def lose_everything_after_the_first_batch(users: int) -> None:
        batches.append(users)
        if len(batches) == 1:
            redis_client.flushdb()  # what a restart without persistence leaves

    with pytest.raises(StoreLostError):
        full_rebuild(
            engine=engine,
            redis_client=redis_client,
            batch_size=1,
            progress=lose_everything_after_the_first_batch,
        )
    assert len(batches) == 3
    assert current_generation(redis_client=redis_client) is None

    run_incremental_sync(engine=engine, redis_client=redis_client)
    assert verify(engine=engine, redis_client=redis_client).clean
