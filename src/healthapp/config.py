"""Settings per environment, chosen by ``HEALTHAPP_ENV`` (``pydantic-settings``).

Every setting is read from the environment; secrets may also come from a JSON file whose
path is ``HEALTHAPP_SECRETS_FILE`` (kept outside the repository). The README's settings
table documents each one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: Settings that are secrets: never logged, never defaulted in production.
SECRET_KEYS = ("SECRET_KEY",)
#: The settings naming the stores; production requires those its process uses.
STORES = ("DATABASE_URL", "REDIS_URL")
#: Secrets a deployment may go without; when given, production refuses a short one.
OPTIONAL_SECRET_KEYS = ("METRICS_TOKEN",)
#: What the secrets file may supply; anything else in it is ignored.
FROM_SECRETS_FILE = (
    *SECRET_KEYS,
    *OPTIONAL_SECRET_KEYS,
    "JWT_PRIVATE_KEY",
    "JWT_PUBLIC_KEYS",
    *STORES,
)
#: What a value of each type must look like, for the message refusing it.
_EXPECTED = {"int_parsing": "an integer", "bool_parsing": "a boolean (1 or 0)"}


class ConfigurationError(RuntimeError):
    """A setting is missing or unusable; the message names the setting, never its value."""


class SecretsFile(PydanticBaseSettingsSource):
    """The secrets and server URLs in the JSON file ``HEALTHAPP_SECRETS_FILE`` names."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the file once, for every field

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("HEALTHAPP_SECRETS_FILE")
        if not path:
            return {}
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
        return {key: str(secrets[key]) for key in FROM_SECRETS_FILE if secrets.get(key)}


def parse_bind(value: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 host in brackets) as ``(host, port)``; ``ValueError`` if it is
    not one."""
    host, colon, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9100")
    return host, int(port)


def _refusal(error: ValidationError) -> ConfigurationError:
    """The settings a validation refused, by their variable names; the values stay out."""
    reasons = []
    for detail in error.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in detail["loc"])
        if detail["type"] == "value_error":
            reasons.append(f"{name} {detail['ctx']['error']}")
        else:
            reasons.append(f"{name} must be {_EXPECTED.get(detail['type'], 'a valid value')}")
    return ConfigurationError("; ".join(reasons))


class Base(BaseSettings):
    """Settings shared by every environment."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,  # an empty variable is an unset one
        extra="ignore",
        validate_assignment=True,  # a test's ``settings.X = ...`` is checked as the environment is
    )

    NAME: ClassVar[str] = "base"
    TESTING: ClassVar[bool] = False
    DEBUG: ClassVar[bool] = False

    INSTANCE_PATH: str = Field(
        default_factory=lambda: str(Path.cwd() / "instance"),
        validation_alias="HEALTHAPP_INSTANCE_PATH",
    )
    # Not secrets themselves, but they may carry a password: kept out of the repr.
    DATABASE_URL: str | None = Field(None, repr=False)
    REDIS_URL: str | None = Field(None, repr=False)
    SECRET_KEY: SecretStr | None = None
    #: PEM of the Ed25519 key that signs tokens (the Core API's); made under the instance
    #: outside production (``healthapp.auth.keys``).
    JWT_PRIVATE_KEY: SecretStr | None = None
    #: PEM of the public keys that verify tokens: the Reports API's keys, and on the Core API
    #: retired keys that still verify their tokens during a rotation.
    JWT_PUBLIC_KEYS: str | None = Field(None, repr=False)
    JWT_ACCESS_TOKEN_EXPIRES: timedelta = Field(
        timedelta(seconds=900), validation_alias="JWT_ACCESS_TOKEN_EXPIRES_SECONDS"
    )
    JWT_REFRESH_TOKEN_EXPIRES: timedelta = Field(
        timedelta(days=30), validation_alias="JWT_REFRESH_TOKEN_EXPIRES_SECONDS"
    )
    MAX_CONTENT_LENGTH: int = 16 * 1024 * 1024
    MAX_BULK_ITEMS: int = 10_000
    LOGIN_RATE_LIMIT_PER_USER: str = "5/minute"
    LOGIN_RATE_LIMIT_PER_USERNAME: str = "25/minute"
    LOGIN_RATE_LIMIT_PER_ADDRESS: str = "60/minute"
    REGISTER_RATE_LIMIT_PER_ADDRESS: str = "10/hour"
    UPLOAD_RATE_LIMIT_PER_ADDRESS: str = "120/minute"
    TRUSTED_PROXY_COUNT: int = 0
    CURRENT_PASSWORD_RATE_LIMIT_PER_USER: str = "10/hour"  # noqa: S105 (a rate limit)
    RATELIMIT_ENABLED: bool = True
    #: Operators and admins sign in only with a second factor (those without one enrol first).
    STAFF_MFA_REQUIRED: bool = True
    CORS_ORIGINS: Annotated[list[str], NoDecode] = Field(default_factory=list)
    SYNC_INTERVAL_SECONDS: int = 30
    SYNC_BATCH_SIZE: int = 500
    AUDIT_STREAM_MAXLEN: int = 1_000_000
    DATABASE_POOL_SIZE: int = 5
    STORE_TIMEOUT_SECONDS: int = 3
    STATEMENT_TIMEOUT_SECONDS: int = 20
    LOG_LEVEL: str = "INFO"
    LOG_JSON: bool = False
    # /metrics answers only a request bearing this token, or only on METRICS_BIND, or
    # nowhere (healthapp.metrics_access).
    METRICS_TOKEN: SecretStr | None = None
    METRICS_BIND: str | None = None

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise _refusal(error) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the secrets file: the environment wins."""
        return init_settings, env_settings, SecretsFile(settings_cls)

    @field_validator("JWT_ACCESS_TOKEN_EXPIRES", "JWT_REFRESH_TOKEN_EXPIRES", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return int(value)
        except ValueError:
            raise ValueError("must be an integer") from None

    @field_validator("METRICS_BIND")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bind(value)
        return value

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator(
        "LOGIN_RATE_LIMIT_PER_USER",
        "LOGIN_RATE_LIMIT_PER_USERNAME",
        "LOGIN_RATE_LIMIT_PER_ADDRESS",
        "REGISTER_RATE_LIMIT_PER_ADDRESS",
        "UPLOAD_RATE_LIMIT_PER_ADDRESS",
        "CURRENT_PASSWORD_RATE_LIMIT_PER_USER",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        """Refuse a rate limit that does not parse: Flask-Limiter would silently not limit."""
        from limits import parse_many

        try:
            parsed = parse_many(value)
        except ValueError:
            raise ValueError("must be a rate limit such as 5/minute") from None
        if any(item.amount < 1 for item in parsed):
            raise ValueError("must allow at least one request per period")
        return value

    @field_validator("TRUSTED_PROXY_COUNT")
    @classmethod
    def _proxy_count(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 or more")
        return value

    def as_flask_config(self) -> dict[str, Any]:
        """The settings as a mapping for ``app.config``, secrets unwrapped."""
        config: dict[str, Any] = {"NAME": self.NAME, "TESTING": self.TESTING, "DEBUG": self.DEBUG}
        for name in type(self).model_fields:
            if name == "JWT_PRIVATE_KEY":
                continue  # the app factory reads it from the settings; no view needs it
            value = getattr(self, name)
            config[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return config


class Development(Base):
    """A laptop: embedded servers when no URL is set; keys made for the instance."""

    NAME: ClassVar[str] = "development"

    STAFF_MFA_REQUIRED: bool = False  # a fresh laptop's first admin signs in with a password

    def model_post_init(self, context: Any) -> None:
        if self.SECRET_KEY is None:
            # Made once per instance, as its key pair is: no value in the repository.
            self.SECRET_KEY = SecretStr(_instance_secret(Path(self.INSTANCE_PATH)))


class Testing(Development):
    """The test suite: fast password hashing, no rate limits unless a test turns them on."""

    NAME: ClassVar[str] = "testing"
    TESTING: ClassVar[bool] = True

    RATELIMIT_ENABLED: bool = False
    PASSWORD_HASH_FAST: bool = True


class Production(Base):
    """A real deployment: every secret and every server must be configured explicitly."""

    NAME: ClassVar[str] = "production"

    LOG_JSON: bool = True

    def require(self, *, stores: Sequence[str] = STORES, signs_tokens: bool | None = None) -> None:
        """Refuse to run without every secret, the stores (``stores``) this process uses and
        its token keys: the private key where it ``signs_tokens`` (the Core API), public keys
        only where it does not (the Reports API); ``None``: it uses no token key."""
        for key in SECRET_KEYS:
            secret: SecretStr | None = getattr(self, key)
            value = secret.get_secret_value() if secret is not None else ""
            if not value:
                raise ConfigurationError(f"{key} must be set to a secret value in production")
            if len(value) < 32:
                raise ConfigurationError(f"{key} must be at least 32 characters in production")
        for key in OPTIONAL_SECRET_KEYS:
            optional: SecretStr | None = getattr(self, key)
            if optional is not None and len(optional.get_secret_value()) < 32:
                raise ConfigurationError(f"{key} must be at least 32 characters in production")
        for key in stores:
            if not getattr(self, key):
                raise ConfigurationError(f"{key} must be set in production")
        if signs_tokens is True and self.JWT_PRIVATE_KEY is None:
            raise ConfigurationError("JWT_PRIVATE_KEY must be set in production")
        if signs_tokens is False and self.JWT_PRIVATE_KEY is not None:
            raise ConfigurationError(
                "JWT_PRIVATE_KEY must not be given to the Reports API: it verifies tokens "
                "with JWT_PUBLIC_KEYS and mints none"
            )
        if signs_tokens is False and not self.JWT_PUBLIC_KEYS:
            raise ConfigurationError("JWT_PUBLIC_KEYS must be set in production")


def _instance_secret(instance: Path) -> str:
    """The instance's own ``SECRET_KEY``, made on first use, readable by its owner only."""
    import secrets

    path = instance / "secret-key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it meanwhile
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(48))
    for _ in range(100):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.02)  # the process that made it is writing it
    raise ConfigurationError(f"{path.name} in the instance folder is empty; remove it")


ENVIRONMENTS: dict[str, type[Base]] = {cls.NAME: cls for cls in (Development, Testing, Production)}


def load_settings(
    name: str | None = None,
    *,
    stores: Sequence[str] = STORES,
    signs_tokens: bool | None = None,
) -> Base:
    """The settings for ``name`` (default: ``HEALTHAPP_ENV``) for a process that uses
    ``stores`` (the Reports API: Redis only) and its token keys (``signs_tokens``: the Core
    API; ``False``: the Reports API; ``None``: the worker and the commands); production
    refuses what it cannot run with."""
    name = (name or os.environ.get("HEALTHAPP_ENV") or "development").lower()
    try:
        environment = ENVIRONMENTS[name]
    except KeyError as exc:
        choices = ", ".join(sorted(ENVIRONMENTS))
        raise ConfigurationError(f"HEALTHAPP_ENV must be one of: {choices}") from exc
    settings = environment()
    if isinstance(settings, Production):
        settings.require(stores=stores, signs_tokens=signs_tokens)
    return settings
