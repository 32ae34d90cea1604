"""Settings per environment, chosen by ``HEALTHAPP_ENV``.

Every setting is read from the environment; secrets may also come from a JSON file whose
path is ``HEALTHAPP_SECRETS_FILE`` (kept outside the repository). The README's settings
table documents each one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

#: Settings that are secrets: never logged, never defaulted in production.
SECRET_KEYS = ("SECRET_KEY", "JWT_SECRET_KEY")
#: The settings naming the stores; production requires those its process uses.
STORES = ("DATABASE_URL", "REDIS_URL")
#: Settings holding a rate limit such as ``5/minute`` (several separated by ``;``).
RATE_LIMIT_KEYS = (
    "LOGIN_RATE_LIMIT_PER_USER",
    "LOGIN_RATE_LIMIT_PER_ADDRESS",
    "UPLOAD_RATE_LIMIT_PER_ADDRESS",
)
_DEVELOPMENT_SECRET = "development-only-not-a-secret-do-not-deploy"  # noqa: S105


class ConfigurationError(RuntimeError):
    """A setting is missing or unusable; the message names the setting, never its value."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer") from exc


def _env_list(name: str, default: str) -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def _require_rate_limit(name: str, value: str) -> None:
    """Refuse a rate limit that does not parse: Flask-Limiter would silently not limit."""
    from limits import parse_many

    try:
        parsed = parse_many(value)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a rate limit such as 5/minute") from exc
    if any(item.amount < 1 for item in parsed):
        raise ConfigurationError(f"{name} must allow at least one request per period")


class Base:
    """Settings shared by every environment."""

    NAME: ClassVar[str] = "base"
    TESTING = False
    DEBUG = False

    def __init__(self) -> None:
        env = os.environ
        self.INSTANCE_PATH = env.get("HEALTHAPP_INSTANCE_PATH", str(Path.cwd() / "instance"))
        self.DATABASE_URL = env.get("DATABASE_URL") or None
        self.REDIS_URL = env.get("REDIS_URL") or None
        self.SECRET_KEY = env.get("SECRET_KEY") or None
        self.JWT_SECRET_KEY = env.get("JWT_SECRET_KEY") or None
        self.JWT_ACCESS_TOKEN_EXPIRES = timedelta(
            seconds=_env_int("JWT_ACCESS_TOKEN_EXPIRES_SECONDS", 900)
        )
        self.JWT_REFRESH_TOKEN_EXPIRES = timedelta(
            seconds=_env_int("JWT_REFRESH_TOKEN_EXPIRES_SECONDS", 30 * 24 * 3600)
        )
        self.MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 16 * 1024 * 1024)
        self.MAX_BULK_ITEMS = _env_int("MAX_BULK_ITEMS", 10_000)
        self.LOGIN_RATE_LIMIT_PER_USER = env.get("LOGIN_RATE_LIMIT_PER_USER", "5/minute")
        self.LOGIN_RATE_LIMIT_PER_ADDRESS = env.get("LOGIN_RATE_LIMIT_PER_ADDRESS", "60/minute")
        self.UPLOAD_RATE_LIMIT_PER_ADDRESS = env.get("UPLOAD_RATE_LIMIT_PER_ADDRESS", "120/minute")
        self.RATELIMIT_ENABLED = env.get("RATELIMIT_ENABLED", "1") not in ("0", "false", "no")
        self.CORS_ORIGINS = _env_list("CORS_ORIGINS", "")
        self.SYNC_INTERVAL_SECONDS = _env_int("SYNC_INTERVAL_SECONDS", 30)
        self.SYNC_BATCH_SIZE = _env_int("SYNC_BATCH_SIZE", 500)
        self.AUDIT_STREAM_MAXLEN = _env_int("AUDIT_STREAM_MAXLEN", 1_000_000)
        self.DATABASE_POOL_SIZE = _env_int("DATABASE_POOL_SIZE", 5)
        self.STORE_TIMEOUT_SECONDS = _env_int("STORE_TIMEOUT_SECONDS", 3)
        self.STATEMENT_TIMEOUT_SECONDS = _env_int("STATEMENT_TIMEOUT_SECONDS", 20)
        self.LOG_LEVEL = env.get("LOG_LEVEL", "INFO")
        self.LOG_JSON = env.get("LOG_JSON", "0") in ("1", "true", "yes")
        for key in RATE_LIMIT_KEYS:
            _require_rate_limit(key, getattr(self, key))
        self._load_secrets_file(env.get("HEALTHAPP_SECRETS_FILE"))

    def _load_secrets_file(self, path: str | None) -> None:
        """Fill settings the environment left unset from the secrets file, if one is named."""
        if not path:
            return
        try:
            secrets = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(
                "HEALTHAPP_SECRETS_FILE names a file that does not exist"
            ) from exc
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                "HEALTHAPP_SECRETS_FILE is not a readable JSON object"
            ) from exc
        if not isinstance(secrets, dict):
            raise ConfigurationError("HEALTHAPP_SECRETS_FILE is not a readable JSON object")
        for key in (*SECRET_KEYS, "DATABASE_URL", "REDIS_URL"):
            if getattr(self, key, None) is None and secrets.get(key):
                setattr(self, key, str(secrets[key]))

    def as_flask_config(self) -> dict[str, Any]:
        """The settings as a mapping for ``app.config``."""
        names = {n for n in dir(self) if n.isupper()}
        return {name: getattr(self, name) for name in names}

    def validate(self, *, stores: Sequence[str] = STORES) -> None:
        """Refuse settings this environment cannot run with (``stores``: the URLs this
        process needs)."""


class Development(Base):
    """A laptop: embedded servers when no URL is set, a fixed non-secret key."""

    NAME = "development"
    DEBUG = False

    def __init__(self) -> None:
        super().__init__()
        for key in SECRET_KEYS:
            if getattr(self, key) is None:
                setattr(self, key, _DEVELOPMENT_SECRET)


class Testing(Development):
    """The test suite: fast password hashing, no rate limits unless a test turns them on."""

    NAME = "testing"
    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        self.RATELIMIT_ENABLED = os.environ.get("RATELIMIT_ENABLED", "0") in ("1", "true")
        self.PASSWORD_HASH_FAST = True


class Production(Base):
    """A real deployment: every secret and every server must be configured explicitly."""

    NAME = "production"
    LOG_JSON = True

    def __init__(self) -> None:
        super().__init__()
        self.LOG_JSON = True

    def validate(self, *, stores: Sequence[str] = STORES) -> None:
        for key in SECRET_KEYS:
            value = getattr(self, key)
            if not value or value == _DEVELOPMENT_SECRET:
                raise ConfigurationError(f"{key} must be set to a secret value in production")
            if len(value) < 32:
                raise ConfigurationError(f"{key} must be at least 32 characters in production")
        for key in stores:
            if not getattr(self, key):
                raise ConfigurationError(f"{key} must be set in production")


ENVIRONMENTS: dict[str, type[Base]] = {cls.NAME: cls for cls in (Development, Testing, Production)}


def load_settings(name: str | None = None, *, stores: Sequence[str] = STORES) -> Base:
    """Build and validate the settings for ``name`` (default: ``HEALTHAPP_ENV``) for a
    process that uses ``stores`` (the Reports API: Redis only)."""
    name = (name or os.environ.get("HEALTHAPP_ENV") or "development").lower()
    try:
        settings = ENVIRONMENTS[name]()
    except KeyError as exc:
        choices = ", ".join(sorted(ENVIRONMENTS))
        raise ConfigurationError(f"HEALTHAPP_ENV must be one of: {choices}") from exc
    settings.validate(stores=stores)
    return settings
