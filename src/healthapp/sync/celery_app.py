"""The Celery app of the sync worker: Redis as broker, redbeat (``healthapp.sync.beat``) as
the beat scheduler.

The worker entry point (``celery -A healthapp.worker worker -B``, as ``healthapp run`` starts
it) builds the app from the environment; beat schedules the incremental sync, and the drain
of the audit stream (report reads into ``audit_events``), every ``SYNC_INTERVAL_SECONDS``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from celery import Celery
from celery.signals import setup_logging

from healthapp.config import Base, ConfigurationError, load_settings

#: The tasks' names, as ``healthapp.sync.tasks`` registers them and beat sends them.
SYNC_TASK = "healthapp.sync.run_incremental"
AUDIT_DRAIN_TASK = "healthapp.audit.drain_read_events"


def broker_urls(redis_url: str) -> tuple[str, str]:
    """``(Celery broker URL, redbeat URL)`` for a redis-py URL, unix sockets included."""
    parsed = urlparse(redis_url)
    if parsed.scheme != "unix":
        return redis_url, redis_url
    database = parse_qs(parsed.query).get("db", ["0"])[0]
    broker = f"redis+socket://{parsed.path}"
    if database != "0":
        broker += f"?virtual_host={database}"
    return broker, redis_url


def create_celery(settings: Base | None = None) -> Celery:
    """The worker's Celery app, configured from ``settings`` (default: the environment)."""
    settings = settings or load_settings()
    if not settings.REDIS_URL:
        raise ConfigurationError("REDIS_URL must be set for the sync worker")
    broker, beat_url = broker_urls(settings.REDIS_URL)
    interval = max(1, int(settings.SYNC_INTERVAL_SECONDS))
    app = Celery("healthapp", broker=broker, include=["healthapp.sync.tasks"])
    app.conf.update(
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_timeout": settings.STORE_TIMEOUT_SECONDS},
        beat_scheduler="healthapp.sync.beat.ResilientScheduler",
        beat_max_loop_interval=min(interval, 5),
        redbeat_redis_url=beat_url,
        redbeat_redis_options={"socket_timeout": settings.STORE_TIMEOUT_SECONDS},
        redbeat_key_prefix="healthapp:redbeat:",
        redbeat_lock_timeout=max(25, 5 * min(interval, 5)),
        beat_schedule={
            "report-sync": {
                "task": SYNC_TASK,
                "schedule": float(interval),
                # A pass that could not start within one interval is superseded by the next.
                "options": {"expires": float(interval)},
            },
            # Report reads wait in a Redis stream until this moves them to PostgreSQL.
            "audit-drain": {
                "task": AUDIT_DRAIN_TASK,
                "schedule": float(interval),
                "options": {"expires": float(interval)},
            },
        },
    )
    return app


@setup_logging.connect
def _configure_logging(**_kwargs: Any) -> None:
    """The worker logs through the same structured pipeline as the APIs."""
    from healthapp.observability import configure_logging

    settings = load_settings()
    configure_logging(json_logs=bool(settings.LOG_JSON), level=settings.LOG_LEVEL)
