"""The Reports API: read-only reports from Redis (SPEC §7). It never opens PostgreSQL."""

from __future__ import annotations

import redis
import structlog
from apiflask import APIFlask
from flask import Response
from prometheus_client import generate_latest

from healthapp import bootstrap
from healthapp.auth.keys import verifying_keys
from healthapp.auth.revocation import Revocations
from healthapp.config import Base, load_settings
from healthapp.metrics_access import MetricsPages, register_metrics
from healthapp.observability import generate_metrics
from healthapp.problems import from_domain_error, problem_response
from healthapp.reports.first_page import FirstPageServer
from healthapp.reports.store import CorruptReport, ReportStore
from healthapp.reports.sync_metrics import sync_registry
from healthapp.webapp import new_api, register_health, register_token_checks, trust_proxies


def create_app(
    settings: Base | None = None, *, redis_client: redis.Redis | None = None
) -> APIFlask:
    """Build the Reports API from ``settings`` (default: from the environment) on
    ``redis_client`` (default: the bootstrap's, from the settings)."""
    # It never opens PostgreSQL, and it is given public keys only: it cannot mint a token.
    settings = settings or load_settings(stores=("REDIS_URL",), signs_tokens=False)
    app = new_api(__name__, title="MyHealthApp Reports API", api_name="reports", settings=settings)
    if redis_client is None:
        redis_client = bootstrap.redis_client(settings)
    store = register_extensions(app, redis_client=redis_client)
    register_token_checks(
        app,
        verifying_keys(settings),
        # No fallback: a token whose revocation cannot be checked gets the 503, never a 200.
        revocations=Revocations.for_settings(redis_client, settings),
    )
    register_blueprints(app)
    register_report_problems(app)
    register_health(app, {"redis": store.ping})
    app.wsgi_app = FirstPageServer(app, store, api="reports")  # type: ignore[method-assign]
    register_metrics(app, metrics_pages(store))
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


def register_report_problems(app: APIFlask) -> None:
    """A stored report that does not decode: a 503, and one log line saying whose report and
    which part of it (never its content), for an operator to rebuild it."""
    log = structlog.get_logger("healthapp.reports")

    @app.errorhandler(CorruptReport)
    def corrupt_report(error: CorruptReport) -> Response:
        log.error("stored report unreadable", username=error.username, part=error.part)
        return problem_response(from_domain_error(error))


def metrics_pages(store: ReportStore) -> MetricsPages:
    """``/metrics`` (this process's figures, of every worker under gunicorn, and the sync's)
    and ``/metrics/sync`` (the sync's alone).

    The worker serves no HTTP; every pass adds its figures to one Redis hash, so these
    are the sums over every worker process.
    """
    registry = sync_registry(store.sync_stats)

    def sync_figures() -> bytes:
        return bytes(generate_latest(registry))

    def everything() -> bytes:
        try:
            figures = sync_figures()
        except redis.RedisError:
            figures = b""  # the process's own figures still answer while Redis is down
        return generate_metrics() + figures

    return {"/metrics": everything, "/metrics/sync": sync_figures}
