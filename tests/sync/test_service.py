"""The incremental sync and the full rebuild on real PostgreSQL and Redis (SPEC §8)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import text

from healthapp.domain.roles import Role
from healthapp.sync.passes import full_rebuild, run_incremental_sync
from healthapp.sync.verify import verify
from tests.factories import delete_checkup, insert_checkups
from tests.sync.conftest import read_all


def outbox_size(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM report_outbox")).scalar_one())


def test_checkups_reach_the_report(api, engine, sync, store):
    user = api.user()
    machine = api.machine("heart_rate", manufacturer="Pulse Co")
    ids = insert_checkups(engine, user_id=user.id, machine_id=machine, count=150)

    stats = sync()

    assert stats.documents_written >= 1
    assert outbox_size(engine) == 0
    page = read_all(store, user.username)
    assert page is not None
    assert [r[0] for r in page.records] == [str(i) for i in ids]  # newest first
    assert page.meta["count"] == 150
    assert page.meta["machines"] == [[str(machine), "heart_rate", "Pulse Co"]]
    summary = page.meta["summary"]["heart_rate"]
    assert summary["count"] == 150
    assert summary["min"] == 50
    assert summary["max"] == 109
    assert summary["latest"] == 51  # the newest row is n = 1
    assert verify(engine=engine, redis_client=store.redis).clean


def test_rows_sharing_one_timestamp_all_arrive(api, engine, sync, store):
    user = api.user()
    machine = api.machine()
    moment = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    first = insert_checkups(engine, user_id=user.id, machine_id=machine, count=300, taken_at=moment)
    sync()
    second = insert_checkups(engine, user_id=user.id, machine_id=machine, count=5, taken_at=moment)
    sync()

    page = read_all(store, user.username)
    assert page is not None
    assert {r[0] for r in page.records} == {str(i) for i in first + second}


def test_checkup_delete_reaches_the_report(api, engine, sync, store):
    user = api.user()
    ids = insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=3)
    sync()
    delete_checkup(engine, ids[0])
    sync()
    page = read_all(store, user.username)
    assert page is not None
    assert [r[0] for r in page.records] == [str(i) for i in ids[1:]]


def test_profile_and_disease_edits_reach_the_report(api, engine, sync, store):
    user = api.user()
    base = f"/api/v1/users/{user.id}"
    assert api.post(f"{base}/profile", user, json={"blood_group": "A+"}).status_code == 201
    r = api.post(f"{base}/diseases", user, json={"name": "asthma", "diagnosed_on": "2020-01-02"})
    assert r.status_code == 201
    sync()
    assert api.patch(f"{base}/profile", user, json={"blood_group": "O-"}).status_code == 200
    sync()
    page = read_all(store, user.username)
    assert page is not None
    assert page.meta["profile"]["blood_group"] == "O-"
    assert page.meta["profile"]["created_at"].endswith("Z")
    [disease] = page.meta["diseases"]
    assert disease["name"] == "asthma"
    assert disease["diagnosed_on"] == "2020-01-02"


def test_machine_edit_reaches_every_report_using_it(api, engine, sync, store):
    admin = api.user(Role.ADMIN)
    machine = api.machine(manufacturer="Old Name")
    users = [api.user() for _ in range(3)]
    for user in users:
        insert_checkups(engine, user_id=user.id, machine_id=machine, count=2)
    sync()
    r = api.patch(f"/api/v1/machines/{machine}", admin, json={"manufacturer": "New Name"})
    assert r.status_code == 200, r.json
    stats = sync()
    assert set(stats.usernames) == {u.username for u in users}
    for user in users:
        page = read_all(store, user.username)
        assert page is not None
        assert page.meta["machines"][0][2] == "New Name"


def test_user_deletion_removes_the_report(api, engine, sync, store):
    admin = api.user(Role.ADMIN)
    user = api.user()
    insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=4)
    sync()
    assert read_all(store, user.username) is not None
    assert api.delete(f"/api/v1/users/{user.id}", admin).status_code == 204
    stats = sync()
    assert stats.documents_removed == 1
    assert read_all(store, user.username) is None
    names, _ = store.list_usernames(after=None, limit=100)
    assert user.username not in names
    assert verify(engine=engine, redis_client=store.redis).clean


def test_filters_and_cursor_walk_every_checkup_once(api, engine, sync, store):
    from healthapp.reports.store import CheckupFilter

    user = api.user()
    machine = api.machine()
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    heart = insert_checkups(engine, user_id=user.id, machine_id=machine, count=70, taken_at=moment)
    insert_checkups(engine, user_id=user.id, machine_id=machine, count=200, checkup_type="spo2")
    sync()

    seen: list[str] = []
    after = None
    while True:
        page = store.get_report(
            user.username, filters=CheckupFilter(checkup_type="heart_rate", after=after), limit=17
        )
        assert page is not None
        seen.extend(r[0] for r in page.records)
        after = page.next_key
        if after is None:
            break
    assert sorted(seen) == sorted(str(i) for i in heart)
    assert len(seen) == len(set(seen))


def test_two_concurrent_passes_process_each_user_once(api, engine, redis_client, store):
    users = [api.user() for _ in range(40)]
    machine = api.machine()
    for user in users:
        insert_checkups(engine, user_id=user.id, machine_id=machine, count=5)
    full_rebuild(engine=engine, redis_client=redis_client)  # the generation exists already
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM report_outbox"))
    for user in users:
        insert_checkups(engine, user_id=user.id, machine_id=machine, count=1)

    results: list[Any] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        results.append(run_incremental_sync(engine=engine, redis_client=redis_client, batch_size=3))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    processed = [name for stats in results for name in stats.usernames]
    assert sorted(processed) == sorted(u.username for u in users)
    assert outbox_size(engine) == 0
    assert verify(engine=engine, redis_client=redis_client).clean


def test_full_rebuild_switches_generation_and_drops_the_old(api, engine, redis_client, sync):
    user = api.user()
    insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=10)
    sync()
    first = int(redis_client.get("rpt:current"))
    stats = full_rebuild(engine=engine, redis_client=redis_client)
    second = int(redis_client.get("rpt:current"))
    assert second > first
    assert stats.checkups_written == 10
    assert not list(redis_client.scan_iter(match=f"rpt:g{first}:*"))
    assert verify(engine=engine, redis_client=redis_client).clean


def test_verify_reports_missing_stale_and_orphaned(api, engine, redis_client, sync):
    kept, changed, lost = api.user(), api.user(), api.user()
    machine = api.machine()
    for user in (kept, changed, lost):
        insert_checkups(engine, user_id=user.id, machine_id=machine, count=2)
    sync()
    generation = int(redis_client.get("rpt:current"))
    redis_client.delete(f"rpt:g{generation}:{{u:{lost.username}}}")
    redis_client.hset(f"rpt:g{generation}:{{u:ghost}}", "h", "x")
    insert_checkups(engine, user_id=changed.id, machine_id=machine, count=1)

    result = verify(engine=engine, redis_client=redis_client)

    assert result.missing == [lost.username]
    assert result.stale == [changed.username]
    assert result.orphaned == ["ghost"]


def test_incremental_pass_leaves_the_outbox_to_a_running_rebuild(api, engine, sync):
    from healthapp.sync.passes import SYNC_LOCK_KEY

    user = api.user()
    insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=2)
    sync()
    insert_checkups(engine, user_id=user.id, machine_id=api.machine(), count=1)
    with engine.connect() as rebuild:
        rebuild.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SYNC_LOCK_KEY})
        rebuild.commit()
        assert sync().skipped
        rebuild.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SYNC_LOCK_KEY})
        rebuild.commit()
    assert outbox_size(engine) == 1
    assert sync().documents_written == 1
    assert outbox_size(engine) == 0


def test_a_pass_sends_no_command_spanning_two_hash_slots(api, engine, redis_client, sync):
    """What Redis Cluster requires: no MULTI, and every command's keys in one slot."""
    from redis.crc import key_slot

    admin = api.user(Role.ADMIN)
    staying, leaving = api.user(), api.user()
    machine = api.machine()
    for user in (staying, leaving):
        insert_checkups(engine, user_id=user.id, machine_id=machine, count=3)
    sync()
    insert_checkups(engine, user_id=staying.id, machine_id=machine, count=2)
    assert api.delete(f"/api/v1/users/{leaving.id}", admin).status_code == 204

    commands: list[list[str]] = []
    monitor_client = redis.Redis(connection_pool=redis_client.connection_pool)
    ready = threading.Event()

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            for entry in monitor.listen():
                words = entry["command"].split()
                if words[:2] == ["ECHO", "end-of-pass"]:
                    return
                commands.append(words)

    watcher = threading.Thread(target=watch)
    watcher.start()
    ready.wait(5)
    stats = sync()
    redis_client.echo("end-of-pass")
    watcher.join(10)

    assert stats.documents_written == 1
    assert stats.documents_removed == 1
    names = [words[0].upper() for words in commands]
    assert "MULTI" not in names
    assert "RENAME" in names
    for words in commands:
        if words[0].upper() in ("RENAME", "DEL", "HSET", "ZADD", "ZREM") and len(words) > 1:
            keys = [words[1], words[2]] if words[0].upper() == "RENAME" else [words[1]]
            assert len({key_slot(key.strip('"').encode()) for key in keys}) == 1, words
