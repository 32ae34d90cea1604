"""Report reads: one XADD on the Reports API, drained into audit_events exactly once."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine

from healthapp.audit import stream
from healthapp.domain.roles import Role
from healthapp.request_context import Actor
from healthapp.sync import tasks
from healthapp.sync.celery_app import AUDIT_DRAIN_TASK, create_celery
from tests.factories import ApiClient, audit_events, insert_checkups


def bearer(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}"}


def _reports_of(api: ApiClient, engine: Engine, sync: Any, count: int) -> list[Any]:
    machine = api.machine()
    users = [api.user() for _ in range(count)]
    for user in users:
        insert_checkups(engine, user_id=user.id, machine_id=machine, count=2)
    sync()
    return users


def _reader(n: int) -> Actor:
    return Actor(id=uuid.uuid4(), username=f"operator-{n}", role="operator")


def test_a_report_read_reaches_the_table_after_a_drain(
    api: ApiClient, engine: Engine, sync: Any, reports: FlaskClient, redis_client: redis.Redis
) -> None:
    [patient] = _reports_of(api, engine, sync, 1)
    stored = audit_events(engine)  # the registration's
    before = datetime.now(UTC)

    r = reports.get(
        f"/api/v1/users/{patient.username}/",
        headers={**bearer(patient), "X-Request-ID": "read-0001"},
    )

    assert r.status_code == 200
    assert audit_events(engine) == stored  # the read path never writes PostgreSQL
    assert redis_client.xlen(stream.STREAM_KEY) == 1
    assert stream.drain_read_events(redis_client, engine) == 1
    [event] = audit_events(engine, action="report.read")
    assert event["action"] == "report.read"
    assert (event["actor_id"], event["actor_username"], event["actor_role"]) == (
        patient.id,
        patient.username,
        "patient",
    )
    assert event["subject_username"] == patient.username
    assert event["request_id"] == "read-0001"
    assert event["details"] == {}
    assert before - timedelta(seconds=1) <= event["occurred_at"] <= datetime.now(UTC)
    assert redis_client.xlen(stream.STREAM_KEY) == 0


def test_refused_and_not_modified_reads_are_not_recorded(
    api: ApiClient, engine: Engine, sync: Any, reports: FlaskClient, redis_client: redis.Redis
) -> None:
    [patient, other] = _reports_of(api, engine, sync, 2)
    first = reports.get(f"/api/v1/users/{patient.username}/", headers=bearer(patient))
    assert first.status_code == 200
    again = reports.get(
        f"/api/v1/users/{patient.username}/",
        headers={**bearer(patient), "If-None-Match": first.headers["ETag"]},
    )
    assert again.status_code == 304
    refused = reports.get(f"/api/v1/users/{other.username}/", headers=bearer(patient))
    assert refused.status_code == 404
    missing = reports.get("/api/v1/users/nobody-here/", headers=bearer(api.user(Role.OPERATOR)))
    assert missing.status_code == 404
    assert redis_client.xlen(stream.STREAM_KEY) == 1


def test_the_list_of_reports_records_one_event_per_listed_user(
    api: ApiClient, engine: Engine, sync: Any, reports: FlaskClient, redis_client: redis.Redis
) -> None:
    users = _reports_of(api, engine, sync, 3)
    operator = api.user(Role.OPERATOR)

    r = reports.get("/api/v1/users/?limit=2", headers=bearer(operator))

    assert r.status_code == 200
    listed = sorted(r.json["users"])
    assert len(listed) == 2
    assert redis_client.xlen(stream.STREAM_KEY) == 1  # one XADD for the page
    assert stream.drain_read_events(redis_client, engine) == 2
    events = audit_events(engine, action="report.list")
    assert sorted(e["subject_username"] for e in events) == listed
    assert {e["actor_username"] for e in events} == {operator.username}
    assert all(e["details"] == {"listed": 2} for e in events)
    assert set(listed) <= {u.username for u in users}


def test_reads_published_while_the_worker_is_down_are_all_drained_once(
    engine: Engine, redis_client: redis.Redis
) -> None:
    for n in range(23):
        stream.publish_report_read(redis_client, _reader(n), f"patient-{n}", f"req-{n}")
    stream.publish_report_list_read(redis_client, _reader(99), ["ann", "bea", "cid"], "req-list")
    assert redis_client.xlen(stream.STREAM_KEY) == 24

    assert stream.drain_read_events(redis_client, engine, batch_size=5) == 26

    events = audit_events(engine)
    assert len(events) == 26
    assert sorted(e["request_id"] for e in events if e["action"] == "report.read") == sorted(
        f"req-{n}" for n in range(23)
    )
    assert len({e["source_id"] for e in events}) == 26
    assert redis_client.xlen(stream.STREAM_KEY) == 0
    assert stream.drain_read_events(redis_client, engine) == 0
    assert len(audit_events(engine)) == 26


def test_a_drain_interrupted_after_its_commit_duplicates_nothing(
    engine: Engine, redis_client: redis.Redis
) -> None:
    for n in range(4):
        stream.publish_report_read(redis_client, _reader(n), f"patient-{n}", None)
    stream.publish_report_list_read(redis_client, _reader(9), ["ann", "bea"], None)
    entries = redis_client.xrange(stream.STREAM_KEY, "-", "+")

    # The first drain stored the batch and died before XDEL: the entries are still there.
    assert stream.store_entries(engine, entries) == 6
    assert redis_client.xlen(stream.STREAM_KEY) == 5
    # A second worker, or the next run, replays them.
    assert stream.store_entries(engine, entries) == 0
    assert stream.drain_read_events(redis_client, engine) == 0

    assert len(audit_events(engine)) == 6
    assert redis_client.xlen(stream.STREAM_KEY) == 0


def test_two_drains_at_once_store_each_read_once(
    engine: Engine, redis_client: redis.Redis, redis_url: str
) -> None:
    for n in range(120):
        stream.publish_report_read(redis_client, _reader(n), f"patient-{n}", f"req-{n}")
    stored: list[int] = []

    def drain() -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            stored.append(stream.drain_read_events(client, engine, batch_size=10))
        finally:
            client.close()

    workers = [threading.Thread(target=drain) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert sum(stored) == 120
    events = audit_events(engine)
    assert len(events) == 120
    assert len({e["request_id"] for e in events}) == 120
    assert redis_client.xlen(stream.STREAM_KEY) == 0


def test_a_malformed_entry_is_skipped_and_does_not_block_the_stream(
    engine: Engine, redis_client: redis.Redis
) -> None:
    redis_client.xadd(stream.STREAM_KEY, {"action": "report.read"})
    redis_client.xadd(stream.STREAM_KEY, {"action": "checkup.delete", "subjects": "x", "at": "1"})
    stream.publish_report_read(redis_client, _reader(1), "patient-1", "req-ok")

    assert stream.drain_read_events(redis_client, engine) == 1

    [event] = audit_events(engine)
    assert event["request_id"] == "req-ok"
    assert redis_client.xlen(stream.STREAM_KEY) == 0


def test_the_stream_is_bounded(redis_client: redis.Redis) -> None:
    for n in range(1000):
        stream.publish_report_read(redis_client, _reader(n), f"patient-{n}", None, maxlen=10)
    # Trimmed approximately (whole nodes of 100 entries), never without bound.
    assert redis_client.xlen(stream.STREAM_KEY) <= 200


def test_a_read_that_cannot_be_recorded_is_a_503(
    api: ApiClient, engine: Engine, sync: Any, reports: FlaskClient, redis_client: redis.Redis
) -> None:
    [patient] = _reports_of(api, engine, sync, 1)
    redis_client.set(stream.STREAM_KEY, "not a stream")  # XADD now fails

    r = reports.get(f"/api/v1/users/{patient.username}/", headers=bearer(patient))

    assert r.status_code == 503
    assert r.content_type == "application/problem+json"
    assert r.headers["Retry-After"]


def test_the_worker_drains_on_the_beat_schedule(
    engine: Engine,
    redis_client: redis.Redis,
    redis_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    app = create_celery()
    [entry] = [e for e in app.conf.beat_schedule.values() if e["task"] == AUDIT_DRAIN_TASK]
    assert entry["schedule"] > 0
    app.loader.import_default_modules()
    assert AUDIT_DRAIN_TASK in app.tasks

    stream.publish_report_read(redis_client, _reader(1), "patient-1", "req-worker")
    monkeypatch.setattr(tasks, "_connections", {})
    try:
        assert tasks.drain_read_events() == {"events_stored": 1}
    finally:
        for worker_engine, client, _ in tasks._connections.values():
            worker_engine.dispose()
            client.close()
    assert [e["request_id"] for e in audit_events(engine)] == ["req-worker"]


def test_the_drain_command(
    engine: Engine, database_url: str, redis_url: str, redis_client: redis.Redis
) -> None:
    from click.testing import CliRunner

    from healthapp.cli import main

    for n in range(3):
        stream.publish_report_read(redis_client, _reader(n), f"patient-{n}", None)
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}

    result = CliRunner().invoke(main, ["audit", "drain"], env=env)

    assert result.exit_code == 0, result.output
    assert "3 events stored" in result.output
    assert len(audit_events(engine, action="report.read")) == 3
    assert redis_client.xlen(stream.STREAM_KEY) == 0
