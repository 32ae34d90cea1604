"""Core and Reports APIs built with settings a test chooses (CORS, rate limits, production)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app as create_core_app
from healthapp.reports.app import create_app as create_reports_app


def build_apps(
    *,
    database_url: str,
    redis_url: str,
    engine: Engine,
    production: bool = False,
    **values: Any,
) -> tuple[Any, Any]:
    """A Core API and a Reports API sharing ``values`` as settings."""
    settings = config.Production() if production else config.Testing()
    settings.DATABASE_URL = database_url
    settings.REDIS_URL = None  # rate limits in memory
    settings.SECRET_KEY = settings.JWT_SECRET_KEY = config.Testing().JWT_SECRET_KEY
    settings.RATELIMIT_ENABLED = False
    settings.LOG_JSON = False
    for name, value in values.items():
        setattr(settings, name, value)
    core = create_core_app(settings, engine=engine)
    settings.REDIS_URL = redis_url
    settings.DATABASE_URL = None
    reports = create_reports_app(settings)
    return core, reports
