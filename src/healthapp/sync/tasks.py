"""The sync as a Celery task: the worker calls the same service as ``healthapp sync``."""

from __future__ import annotations

import os
from typing import Any

import redis
import structlog
from celery import shared_task
from sqlalchemy import Engine

from healthapp import bootstrap
from healthapp.audit.stream import drain_read_events as drain_stream
from healthapp.config import load_settings
from healthapp.database import STORE_UNREACHABLE
from healthapp.sync.celery_app import AUDIT_DRAIN_TASK, SYNC_TASK
from healthapp.sync.passes import run_incremental_sync

_log = structlog.get_logger("healthapp.sync")
_connections: dict[int, tuple[Engine, redis.Redis, int]] = {}


def _connections_of_this_process() -> tuple[Engine, redis.Redis, int]:
    """One engine and Redis client per worker process, made after the fork."""
    pid = os.getpid()
    if pid not in _connections:
        settings = load_settings()
        engine = bootstrap.engine(settings, pool_size=2)
        client = bootstrap.redis_client(settings, timeout_seconds=30)
        _connections[pid] = (engine, client, settings.SYNC_BATCH_SIZE)
    return _connections[pid]


@shared_task(name=SYNC_TASK, ignore_result=True)
def run_incremental() -> dict[str, Any]:
    """One incremental pass over the report outbox."""
    engine, client, batch_size = _connections_of_this_process()
    try:
        stats = run_incremental_sync(engine=engine, redis_client=client, batch_size=batch_size)
    except STORE_UNREACHABLE as error:
        # The pass left the outbox as it was and counted the failure; beat runs it again.
        _log.warning("sync pass skipped: a store is unreachable", error=type(error).__name__)
        return {"skipped": True, "store_unreachable": True}
    return {
        "documents_written": stats.documents_written,
        "documents_removed": stats.documents_removed,
        "entries_processed": stats.entries_processed,
        "skipped": stats.skipped,
    }


@shared_task(name=AUDIT_DRAIN_TASK, ignore_result=True)
def drain_read_events() -> dict[str, Any]:
    """Move report reads from the audit stream into ``audit_events``."""
    engine, client, _batch_size = _connections_of_this_process()
    try:
        return {"events_stored": drain_stream(client, engine)}
    except STORE_UNREACHABLE as error:
        # The stream keeps the entries until a drain commits them.
        _log.warning("audit drain skipped: a store is unreachable", error=type(error).__name__)
        return {"events_stored": 0, "store_unreachable": True}
