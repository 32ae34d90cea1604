"""The Reports API: read-only reports from Redis (SPEC §7). It never opens PostgreSQL."""

from __future__ import annotations

import redis
from apiflask import APIFlask
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from healthapp import bootstrap
from healthapp.config import Base, load_settings
from healthapp.observability import EXTRA_METRICS
from healthapp.reports.first_page import FirstPageServer
from healthapp.reports.store import ReportStore
from healthapp.reports.sync_metrics import sync_registry
from healthapp.webapp import new_api, register_health, trust_proxies


def create_app(
    settings: Base | None = None, *, redis_client: redis.Redis | None = None
) -> APIFlask:
    """Build the Reports API from ``settings`` (default: from the environment) on
    ``redis_client`` (default: the bootstrap's, from the settings)."""
    settings = settings or load_settings(stores=("REDIS_URL",))  # it never opens PostgreSQL
    app = new_api(__name__, title="MyHealthApp Reports API", api_name="reports", settings=settings)
    if redis_client is None:
        redis_client = bootstrap.redis_client(settings)
    store = register_extensions(app, redis_client=redis_client)
    register_blueprints(app)
    register_health(app, {"redis": store.ping})
    register_sync_metrics(app, store)
    app.wsgi_app = FirstPageServer(app, store, api="reports")  # type: ignore[method-assign]
    trust_proxies(app)  # outside the first-page server: both layers see one client address
    return app


def register_extensions(app: APIFlask, *, redis_client: redis.Redis) -> ReportStore:
    """Bind the report store (on ``redis_client``) to ``app``."""
    store = ReportStore(redis_client)
    app.extensions["healthapp.report_store"] = store
    return store


def register_blueprints(app: APIFlask) -> None:
    """Mount the report views."""
    from healthapp.reports.views import bp

    app.register_blueprint(bp)


def register_sync_metrics(app: APIFlask, store: ReportStore) -> None:
    """The sync worker's figures (kept in Redis) on ``/metrics`` and on ``/metrics/sync``.

    The worker serves no HTTP; every pass adds its figures to one Redis hash, so these
    are the sums over every worker process.
    """
    registry = sync_registry(store.sync_stats)

    def sync_figures() -> bytes:
        try:
            return bytes(generate_latest(registry))
        except redis.RedisError:
            return b""  # /metrics still answers (the process's own figures) while Redis is down

    app.extensions.setdefault(EXTRA_METRICS, []).append(sync_figures)

    @app.get("/metrics/sync")
    @app.doc(tags=["Health"], summary="Sync metrics (Prometheus)", hide=True)
    def sync_metrics() -> Response:
        """The sync's figures alone, as the worker left them in Redis."""
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    sync_metrics.allowed_roles = None  # type: ignore[attr-defined]
