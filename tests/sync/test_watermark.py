"""The sync watermark: Redis that lost writes after their outbox rows were cleared is found
out, and the sync rebuilds the reports by itself (SPEC §14).

Redis "losing its last writes" is played here by putting back every key as it was at an
earlier moment (DUMP, then FLUSHDB and RESTORE): what a restart from an append-only file
missing its last second leaves. ``tests/faults/test_redis_lost_writes.py`` does it with a
real ``appendfsync everysec`` file and a killed server.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import text

from healthapp.cli import main
from healthapp.domain.report_codec import LAYOUT_VERSION
from healthapp.domain.report_keys import SYNC_STATS_KEY, WATERMARK_KEY
from healthapp.reports.sync_metrics import render_prometheus
from healthapp.sync.passes import full_rebuild, run_incremental_sync
from healthapp.sync.verify import verify
from healthapp.sync.watermark import StoreBehindError, read_watermarks
from healthapp.sync.writer import write_reports
from tests.factories import insert_checkups
from tests.sync.conftest import read_all

Snapshot = list[tuple[bytes, bytes, int]]


def snapshot(client: redis.Redis) -> Snapshot:
    """Every key of Redis, serialised with its time to live."""
    return [
        (key, client.dump(key), max(int(client.pttl(key)), 0))  # type: ignore[misc]
        for key in client.scan_iter(count=1000)
    ]


def put_back(client: redis.Redis, keys: Snapshot) -> None:
    """Redis as it was when ``keys`` were taken: every later write lost."""
    client.flushdb()
    for key, value, ttl in keys:
        client.restore(key, ttl, value)


def watermarks(engine: Any, client: redis.Redis) -> tuple[int, int]:
    """``(PostgreSQL's, Redis's)`` watermark."""
    with engine.connect() as conn:
        marks = read_watermarks(conn=conn, redis_client=client)
    return marks.committed, marks.held


def rebuilds(client: redis.Redis, reason: str) -> int:
    return int(client.hget(SYNC_STATS_KEY, f"automatic_rebuilds_total:{reason}") or 0)


def patients_with_checkups(api: Any, engine: Any, count: int) -> list[Any]:
    machine = api.machine()
    users = [api.user() for _ in range(count)]
    for user in users:
        insert_checkups(engine, user_id=user.id, machine_id=machine, count=3)
    return users


def test_each_batch_advances_both_watermarks_together(api, engine, redis_client, sync):
    patients_with_checkups(api, engine, 3)

    sync()  # a first start: the rebuild (no generation yet), then the outbox in batches
    first = watermarks(engine, redis_client)
    insert_checkups(engine, user_id=api.user().id, machine_id=api.machine(), count=1)
    for user in patients_with_checkups(api, engine, 2):
        insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=1)
    stats = sync(batch_size=1)

    assert first[0] == first[1] > 0
    assert stats.batches >= 3  # one outbox entry each
    assert watermarks(engine, redis_client) == (first[0] + stats.batches,) * 2
    assert redis_client.hget(WATERMARK_KEY, "layout") == str(LAYOUT_VERSION).encode()


def test_redis_that_lost_writes_after_the_outbox_was_cleared_is_rebuilt_by_the_next_pass(
    api, engine, redis_client, sync, store, caplog
):
    kept = patients_with_checkups(api, engine, 3)
    sync()
    before = snapshot(redis_client)
    changed = kept[0]
    insert_checkups(engine, user_id=changed.id, machine_id=api.machine(), count=2)
    [added] = patients_with_checkups(api, engine, 1)
    sync()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM report_outbox")).scalar_one() == 0
    put_back(redis_client, before)

    lost = verify(engine=engine, redis_client=redis_client)
    assert lost.stale == [changed.username]
    assert lost.missing == [added.username]
    committed, held = watermarks(engine, redis_client)
    assert lost.behind == (held, committed)
    assert held < committed

    stats = sync()  # nothing in the outbox: only the watermark tells

    assert stats.entries_processed == 0
    assert verify(engine=engine, redis_client=redis_client).clean
    page = read_all(store, changed.username)
    assert page is not None
    assert page.meta["count"] == 5
    assert read_all(store, added.username) is not None
    assert rebuilds(redis_client, "redis_behind") == 1
    assert "Redis does not hold what PostgreSQL says the sync wrote" in caplog.text
    families = render_prometheus(store.sync_stats())
    assert 'healthapp_sync_automatic_rebuilds_total{reason="redis_behind"} 1.0' in families
    committed, held = watermarks(engine, redis_client)
    assert committed == held

    assert sync().documents_written == 0  # level again: no further rebuild
    assert rebuilds(redis_client, "redis_behind") == 1


def test_a_batch_that_finds_redis_behind_stops_and_the_pass_rebuilds(
    api, engine, redis_client, sync
):
    users = patients_with_checkups(api, engine, 2)
    sync()
    before = snapshot(redis_client)
    for user in users:
        insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=1)
    sync()  # cleared the outbox; Redis is about to forget it
    for user in patients_with_checkups(api, engine, 3):
        insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=1)
    batches: list[int] = []

    def lose_writes_after_the_first_batch(entries: int) -> None:
        batches.append(entries)
        if len(batches) == 1:
            put_back(redis_client, before)

    run_incremental_sync(
        engine=engine,
        redis_client=redis_client,
        batch_size=1,
        progress=lose_writes_after_the_first_batch,
    )

    assert len(batches) == 1  # the second batch refused, the pass rebuilt instead
    assert rebuilds(redis_client, "redis_behind") == 1
    sync()  # the outbox rows of the refused batches: still there, synced now
    assert verify(engine=engine, redis_client=redis_client).clean


def test_a_write_into_a_redis_behind_is_refused_before_the_watermark_moves(
    api, engine, redis_client, sync
):
    [user] = patients_with_checkups(api, engine, 1)
    sync()
    committed, held = watermarks(engine, redis_client)
    redis_client.hset(WATERMARK_KEY, "seq", held - 1)  # the last batch's mark lost
    from healthapp.sync.sources import build_reports

    with engine.connect() as conn:
        reports = build_reports(conn=conn, usernames=[user.username])
    generation = int(redis_client.get("rpt:current"))

    with pytest.raises(StoreBehindError):
        write_reports(
            redis_client=redis_client,
            generation=generation,
            reports=reports,
            watermark=committed + 1,
        )
    assert int(redis_client.hget(WATERMARK_KEY, "seq")) == held - 1


def test_a_redis_ahead_of_a_restored_database_is_rebuilt(api, engine, redis_client, sync):
    patients_with_checkups(api, engine, 2)
    sync()
    for _ in range(3):
        full_rebuild(engine=engine, redis_client=redis_client)
    with engine.begin() as conn:  # PostgreSQL as a backup from before the rebuilds left it
        conn.execute(text("UPDATE sync_watermark SET seq = 1"))

    sync()

    assert rebuilds(redis_client, "redis_ahead") == 1
    committed, held = watermarks(engine, redis_client)
    assert committed == held == 2
    assert verify(engine=engine, redis_client=redis_client).clean


def test_redis_restarted_empty_is_rebuilt_and_counted(api, engine, redis_client, sync):
    patients_with_checkups(api, engine, 2)
    sync()
    assert rebuilds(redis_client, "no_generation") == 1  # the first start
    redis_client.flushdb()

    sync()

    assert rebuilds(redis_client, "redis_behind") == 1
    assert verify(engine=engine, redis_client=redis_client).clean


def test_concurrent_passes_leave_the_watermarks_level(api, engine, redis_client, sync):
    users = patients_with_checkups(api, engine, 30)
    sync()
    for user in users:
        insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=1)
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        results.append(run_incremental_sync(engine=engine, redis_client=redis_client, batch_size=2))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(stats.entries_processed for stats in results) == len(users)
    assert rebuilds(redis_client, "redis_behind") == rebuilds(redis_client, "redis_ahead") == 0
    committed, held = watermarks(engine, redis_client)
    assert committed == held
    assert verify(engine=engine, redis_client=redis_client).clean


def test_verify_names_a_redis_behind_and_exits_1(api, engine, database_url, redis_url, sync):
    patients_with_checkups(api, engine, 1)
    sync()
    with engine.begin() as conn:  # a batch PostgreSQL committed and Redis lost
        conn.execute(text("UPDATE sync_watermark SET seq = seq + 1"))
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}

    result = CliRunner().invoke(main, ["sync", "--verify"], env=env)

    assert result.exit_code == 1, result.output
    assert "behind: Redis holds sync watermark" in result.output
    assert "0 missing, 0 stale, 0 orphaned" in result.output
