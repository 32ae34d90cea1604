"""Core and Reports APIs built with settings a test chooses (CORS, rate limits, production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app as create_core_app
from healthapp.auth.keys import development_key_pair
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
    if production:
        # What a deployment is given: a secret and the key pair (each API its half), here
        # the suite's own pair, so that the suite's tokens are valid.
        private_file, public_file = development_key_pair(Path(settings.INSTANCE_PATH))
        private_key, public_key = private_file.read_text(), public_file.read_text()
        settings.SECRET_KEY = config.Testing().SECRET_KEY
        settings.JWT_PRIVATE_KEY = SecretStr(private_key)
    settings.RATELIMIT_ENABLED = False
    settings.LOG_JSON = False
    for name, value in values.items():
        setattr(settings, name, value)
    core = create_core_app(settings, engine=engine)
    settings.REDIS_URL = redis_url
    settings.DATABASE_URL = None
    if production:
        settings.JWT_PRIVATE_KEY = None
        settings.JWT_PUBLIC_KEYS = public_key
    reports = create_reports_app(settings)
    return core, reports
