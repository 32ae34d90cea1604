"""The Reports API: read-only reports from Redis (SPEC §7). It never opens PostgreSQL."""

from __future__ import annotations

import redis
from apiflask import APIFlask
from flask import Response

from healthapp.config import Base, load_settings
from healthapp.extensions import make_redis
from healthapp.reports.first_page import FirstPageServer
from healthapp.reports.store import ReportStore
from healthapp.webapp import new_api, register_health


def create_app(
    settings: Base | None = None, *, redis_client: redis.Redis | None = None
) -> APIFlask:
    """Build the Reports API from ``settings`` (default: from the environment)."""
    settings = settings or load_settings(stores=("REDIS_URL",))  # it never opens PostgreSQL
    app = new_api(__name__, title="MyHealthApp Reports API", api_name="reports", settings=settings)
    store = register_extensions(app, redis_client=redis_client)
    register_blueprints(app)
    register_health(app, {"redis": store.ping})
    register_sync_metrics(app, store)
    app.wsgi_app = FirstPageServer(app, store, api="reports")  # type: ignore[method-assign]
    return app


def register_extensions(app: APIFlask, *, redis_client: redis.Redis | None = None) -> ReportStore:
    """Bind the report store (a Redis client with short timeouts) to ``app``."""
    if redis_client is None:
        url = app.config.get("REDIS_URL")
        if not url:
            raise RuntimeError("REDIS_URL is not set; `healthapp run` starts an embedded server")
        redis_client = make_redis(url, timeout_seconds=app.config["STORE_TIMEOUT_SECONDS"])
    store = ReportStore(redis_client)
    app.extensions["healthapp.report_store"] = store
    return store


def register_blueprints(app: APIFlask) -> None:
    """Mount the report views."""
    from healthapp.reports.views import bp

    app.register_blueprint(bp)


def register_sync_metrics(app: APIFlask, store: ReportStore) -> None:
    """``/metrics/sync``: the sync's lag, last run, documents written and errors."""

    @app.get("/metrics/sync")
    @app.doc(tags=["Health"], summary="Sync metrics (Prometheus)", hide=True)
    def sync_metrics() -> Response:
        """The last sync pass's figures, as the worker left them in Redis."""
        stats = store.sync_stats()
        lines = []
        for name, kind, help_text in _SYNC_METRICS:
            if name in stats:
                metric = f"healthapp_sync_{name}"
                lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
                lines.append(f"{metric} {float(stats[name])}")
        return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")

    sync_metrics.allowed_roles = None  # type: ignore[attr-defined]


_SYNC_METRICS = (
    ("last_run_at", "gauge", "Unix time the last successful pass finished."),
    ("last_duration_seconds", "gauge", "Duration of the last successful pass."),
    ("last_lag_seconds", "gauge", "Age of the oldest pending outbox entry at the last pass."),
    ("last_documents_written", "gauge", "Reports written by the last pass."),
    ("documents_written_total", "counter", "Reports written by every pass."),
    ("documents_removed_total", "counter", "Reports of deleted users removed."),
    ("passes_total", "counter", "Successful passes."),
    ("errors_total", "counter", "Passes that failed."),
    ("last_error_at", "gauge", "Unix time of the last failed pass."),
)
