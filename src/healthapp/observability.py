"""Structured logs, request ids and Prometheus metrics for both APIs (and the worker's logs).

Log lines carry the request id, method, route pattern, status and duration; never a query
string, a body, a token or a health value.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from typing import Any

import structlog
from apiflask import APIFlask
from flask import Response, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from healthapp.request_context import set_request_id

REQUEST_ID_HEADER = "X-Request-ID"
#: A request id a client may choose; any other is replaced by a generated one.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

HTTP_REQUESTS = Counter(
    "healthapp_http_requests_total",
    "HTTP requests answered, by API, route pattern, method and status.",
    ["api", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "healthapp_http_request_duration_seconds",
    "Time to answer an HTTP request, by API and route pattern.",
    ["api", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

UPLOAD_ITEMS = Counter(
    "healthapp_checkup_upload_items_total",
    "Check-ups received in bulk uploads, by outcome: created (stored), duplicate (stored"
    " before, same content) or rejected (invalid, conflicting, or refused with the rest of"
    " an all-or-nothing upload).",
    ["outcome"],
)
for _outcome in ("created", "duplicate", "rejected"):
    UPLOAD_ITEMS.labels(_outcome)

_configured = False


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    """Route stdlib and structlog output through one renderer: JSON in production."""
    global _configured
    if _configured:
        return
    _configured = True
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def register_observability(app: APIFlask, *, api: str) -> None:
    """Request ids and one access log line per request (``healthapp.metrics_access`` serves
    the metrics)."""
    configure_logging(json_logs=bool(app.config.get("LOG_JSON")), level=app.config["LOG_LEVEL"])
    access_log = structlog.get_logger("healthapp.access")

    @app.before_request
    def start_request() -> None:
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex
        g.request_started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)
        set_request_id(g.request_id)

    @app.after_request
    def finish_request(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        if started is not None and route != "/metrics":
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(api, route, request.method, str(response.status_code)).inc()
            HTTP_LATENCY.labels(api, route).observe(elapsed)
            access_log.info(
                "request",
                method=request.method,
                route=route,
                status=response.status_code,
                duration_ms=round(elapsed * 1000, 2),
            )
        return response

    @app.teardown_request
    def forget_request(_exc: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()
        set_request_id(None)


def generate_metrics() -> bytes:
    """The exposition text; aggregated across processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return bytes(generate_latest(registry))
    return bytes(generate_latest())
