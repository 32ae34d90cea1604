"""The Celery tasks in process: the broker URLs, and a pass skipped while a store is down."""

from __future__ import annotations

import os

from healthapp.audit.stream import STREAM_KEY, publish_report_read
from healthapp.database import make_engine
from healthapp.extensions import make_redis
from healthapp.request_context import Actor
from healthapp.sync import tasks
from healthapp.sync.celery_app import broker_urls
from tests.processes import free_port


def test_broker_urls_for_sockets_and_hosts():
    assert broker_urls("unix:///tmp/r.sock") == ("redis+socket:///tmp/r.sock", "unix:///tmp/r.sock")
    assert broker_urls("unix:///tmp/r.sock?db=3")[0] == "redis+socket:///tmp/r.sock?virtual_host=3"
    assert broker_urls("redis://127.0.0.1:6379/2") == (
        "redis://127.0.0.1:6379/2",
        "redis://127.0.0.1:6379/2",
    )


def test_the_tasks_skip_a_pass_while_postgresql_is_down(redis_url: str, monkeypatch):
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeout_seconds=1)
    client = make_redis(redis_url)
    monkeypatch.setitem(tasks._connections, os.getpid(), (engine, client, 10))

    publish_report_read(client, Actor(id=None, username="op", role="operator"), "pat", "r-1")

    assert tasks.run_incremental.run() == {"skipped": True, "store_unreachable": True}
    assert tasks.drain_read_events.run() == {"events_stored": 0, "store_unreachable": True}
    assert client.xlen(STREAM_KEY) == 1  # kept for the next drain
    client.close()
