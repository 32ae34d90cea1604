"""Settings per environment: production refuses missing or default secrets (SPEC §2)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from healthapp import config
from healthapp.auth.keys import generate_key_pair
from healthapp.config import ConfigurationError, load_settings

ALL_SETTINGS = (
    "HEALTHAPP_ENV",
    "HEALTHAPP_SECRETS_FILE",
    "SECRET_KEY",
    "JWT_PRIVATE_KEY",
    "JWT_PUBLIC_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
    "RATELIMIT_ENABLED",
    "LOGIN_RATE_LIMIT_PER_USER",
    "LOGIN_RATE_LIMIT_PER_USERNAME",
    "LOGIN_RATE_LIMIT_PER_ADDRESS",
    "REGISTER_RATE_LIMIT_PER_ADDRESS",
    "UPLOAD_RATE_LIMIT_PER_ADDRESS",
    "TRUSTED_PROXY_COUNT",
    "JWT_ACCESS_TOKEN_EXPIRES_SECONDS",
    "MAX_CONTENT_LENGTH",
    "CORS_ORIGINS",
    "LOG_JSON",
    "STAFF_MFA_REQUIRED",
)

# Made-up values, long enough for production, never used anywhere real.
SECRET = "s3cr3t-" + "k" * 40
JWT_PRIVATE_KEY, JWT_PUBLIC_KEY = generate_key_pair()
DATABASE_URL = "postgresql://app:db-password-value@db.internal:5432/healthapp"
REDIS_URL = "redis://:redis-password-value@cache.internal:6379/0"
PRODUCTION_ENV = {
    "SECRET_KEY": SECRET,
    "JWT_PRIVATE_KEY": JWT_PRIVATE_KEY,
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts from an environment with none of the settings set, in an instance
    folder of its own."""
    for name in ALL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HEALTHAPP_INSTANCE_PATH", str(tmp_path / "instance"))


def _set(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _refusal(name: str = "production") -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(name, signs_tokens=True)
    return str(caught.value)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _assert_no_value_disclosed(message: str) -> None:
    for value in (SECRET, JWT_PRIVATE_KEY, "db-password-value", "redis-password-value"):
        assert value not in message


# Choosing the environment ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("development", config.Development),
        ("testing", config.Testing),
        ("TESTING", config.Testing),
    ],
)
def test_environment_is_chosen_by_name(name: str, cls: type[config.Base]) -> None:
    assert type(load_settings(name)) is cls


def test_environment_comes_from_healthapp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHAPP_ENV", "testing")
    assert isinstance(load_settings(), config.Testing)


def test_development_is_the_default() -> None:
    assert type(load_settings()) is config.Development


def test_unknown_environment_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHAPP_ENV", "staging")
    message = _refusal(None)  # type: ignore[arg-type]
    assert "HEALTHAPP_ENV" in message
    assert "production" in message


# Production ----------------------------------------------------------------------------


def test_production_starts_with_every_secret_and_server(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, PRODUCTION_ENV)
    settings = load_settings("production")
    assert isinstance(settings, config.Production)
    assert _secret(settings.SECRET_KEY) == SECRET
    assert _secret(settings.JWT_PRIVATE_KEY) == JWT_PRIVATE_KEY
    assert settings.DATABASE_URL == DATABASE_URL
    assert settings.REDIS_URL == REDIS_URL
    assert settings.LOG_JSON is True
    assert settings.RATELIMIT_ENABLED is True


@pytest.mark.parametrize("missing", ["SECRET_KEY", "JWT_PRIVATE_KEY", "DATABASE_URL", "REDIS_URL"])
def test_production_names_the_missing_setting(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _set(monkeypatch, {k: v for k, v in PRODUCTION_ENV.items() if k != missing})
    message = _refusal()
    assert missing in message
    _assert_no_value_disclosed(message)


#: The Reports API's production settings: no database, public keys only.
REPORTS_ENV = {
    **{k: v for k, v in PRODUCTION_ENV.items() if k not in ("DATABASE_URL", "JWT_PRIVATE_KEY")},
    "JWT_PUBLIC_KEYS": JWT_PUBLIC_KEY,
}


def test_the_reports_api_in_production_needs_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    from healthapp.reports.app import create_app

    _set(monkeypatch, REPORTS_ENV)
    monkeypatch.setenv("HEALTHAPP_ENV", "production")

    assert "DATABASE_URL" in _refusal()  # the Core API, the worker and the CLI need it
    app = create_app()
    assert app.config["DATABASE_URL"] is None


def test_the_reports_api_in_production_needs_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from healthapp.reports.app import create_app

    _set(monkeypatch, {k: v for k, v in REPORTS_ENV.items() if k != "REDIS_URL"})
    monkeypatch.setenv("HEALTHAPP_ENV", "production")

    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        create_app()


def test_the_reports_api_in_production_needs_public_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from healthapp.reports.app import create_app

    _set(monkeypatch, {k: v for k, v in REPORTS_ENV.items() if k != "JWT_PUBLIC_KEYS"})
    monkeypatch.setenv("HEALTHAPP_ENV", "production")
    with pytest.raises(ConfigurationError, match="JWT_PUBLIC_KEYS"):
        create_app()


def test_the_reports_api_in_production_refuses_the_private_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from healthapp.reports.app import create_app

    _set(monkeypatch, {**REPORTS_ENV, "JWT_PRIVATE_KEY": JWT_PRIVATE_KEY})
    monkeypatch.setenv("HEALTHAPP_ENV", "production")
    with pytest.raises(ConfigurationError, match="JWT_PRIVATE_KEY must not be given") as caught:
        create_app()
    assert JWT_PRIVATE_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("JWT_PRIVATE_KEY", "not a key"),
        ("JWT_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        ("JWT_PUBLIC_KEYS", "not a key"),
    ],
)
def test_an_unusable_key_is_refused_by_name_without_its_value(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: str
) -> None:
    from healthapp.app import create_app as create_core_app
    from healthapp.reports.app import create_app as create_reports_app

    monkeypatch.setenv(setting, value)
    monkeypatch.setenv("HEALTHAPP_ENV", "development")
    factory = create_core_app if setting == "JWT_PRIVATE_KEY" else create_reports_app
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    with pytest.raises(ConfigurationError, match=setting) as caught:
        factory()
    assert value not in str(caught.value)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "JWT_PRIVATE_KEY", "DATABASE_URL", "REDIS_URL"])
def test_production_treats_an_empty_setting_as_missing(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _set(monkeypatch, {**PRODUCTION_ENV, missing: ""})
    assert missing in _refusal()


def test_development_secrets_are_made_per_instance(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Nothing in the repository is a secret: each instance makes its own, once.
    first = _secret(config.Development().SECRET_KEY)
    assert first == _secret(config.Development().SECRET_KEY)
    assert len(first) >= 32
    monkeypatch.setenv("HEALTHAPP_INSTANCE_PATH", str(tmp_path / "another"))
    assert _secret(config.Development().SECRET_KEY) != first
    assert (tmp_path / "another" / "secret-key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("key", ["SECRET_KEY"])
def test_production_refuses_a_short_secret_without_printing_it(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    short = "short-but-real-value"
    _set(monkeypatch, {**PRODUCTION_ENV, key: short})
    message = _refusal()
    assert key in message
    assert short not in message


def test_production_app_factory_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from healthapp.app import create_app

    _set(monkeypatch, {k: v for k, v in PRODUCTION_ENV.items() if k != "JWT_PRIVATE_KEY"})
    monkeypatch.setenv("HEALTHAPP_ENV", "production")
    with pytest.raises(ConfigurationError, match="JWT_PRIVATE_KEY"):
        create_app()


def test_development_fills_secrets_but_keeps_given_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings("development")
    assert settings.SECRET_KEY
    monkeypatch.setenv("SECRET_KEY", SECRET)
    assert _secret(load_settings("development").SECRET_KEY) == SECRET


# The secrets file ----------------------------------------------------------------------


def _secrets_file(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


def test_secrets_file_fills_production_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _secrets_file(tmp_path, PRODUCTION_ENV)
    monkeypatch.setenv("HEALTHAPP_SECRETS_FILE", str(path))
    settings = load_settings("production")
    assert _secret(settings.SECRET_KEY) == SECRET
    assert _secret(settings.JWT_PRIVATE_KEY) == JWT_PRIVATE_KEY
    assert settings.DATABASE_URL == DATABASE_URL
    assert settings.REDIS_URL == REDIS_URL


def test_environment_wins_over_secrets_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from_env = "from-the-environment-" + "e" * 20
    path = _secrets_file(tmp_path, PRODUCTION_ENV)
    monkeypatch.setenv("HEALTHAPP_SECRETS_FILE", str(path))
    monkeypatch.setenv("SECRET_KEY", from_env)
    chosen = _secret(load_settings("production").SECRET_KEY)
    assert chosen == from_env


def test_secrets_file_missing_a_key_is_still_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _secrets_file(tmp_path, {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"})
    monkeypatch.setenv("HEALTHAPP_SECRETS_FILE", str(path))
    message = _refusal()
    assert "SECRET_KEY" in message
    _assert_no_value_disclosed(message)


def test_secrets_file_only_supplies_known_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _secrets_file(tmp_path, {**PRODUCTION_ENV, "DEBUG": True, "RATELIMIT_ENABLED": False})
    monkeypatch.setenv("HEALTHAPP_SECRETS_FILE", str(path))
    settings = load_settings("production")
    assert settings.DEBUG is False
    assert settings.RATELIMIT_ENABLED is True


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '"a string"', ""],
    ids=["malformed", "array", "string", "empty"],
)
def test_unreadable_secrets_file_is_refused_without_its_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str
) -> None:
    path = _secrets_file(tmp_path, content)
    monkeypatch.setenv("HEALTHAPP_SECRETS_FILE", str(path))
    message = _refusal()
    assert "HEALTHAPP_SECRETS_FILE" in message
    if content:
        assert content not in message


def test_missing_secrets_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALTHAPP_SECRETS_FILE", str(tmp_path / "absent.json"))
    assert "HEALTHAPP_SECRETS_FILE" in _refusal("development")


# Other settings ------------------------------------------------------------------------


def test_defaults_match_the_spec() -> None:
    settings = load_settings("development")
    assert settings.LOGIN_RATE_LIMIT_PER_USER == "5/minute"
    assert settings.LOGIN_RATE_LIMIT_PER_ADDRESS == "60/minute"
    assert settings.REGISTER_RATE_LIMIT_PER_ADDRESS == "10/hour"
    assert settings.UPLOAD_RATE_LIMIT_PER_ADDRESS == "120/minute"
    assert settings.TRUSTED_PROXY_COUNT == 0  # X-Forwarded-For ignored
    assert settings.MAX_CONTENT_LENGTH == 16 * 1024 * 1024
    assert settings.MAX_BULK_ITEMS == 10_000
    assert settings.SYNC_INTERVAL_SECONDS == 30
    expires = settings.JWT_ACCESS_TOKEN_EXPIRES
    assert expires == timedelta(minutes=15)
    assert settings.RATELIMIT_ENABLED is True


def test_staff_need_a_second_factor_in_production_only_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, PRODUCTION_ENV)
    assert load_settings("production").STAFF_MFA_REQUIRED is True
    assert load_settings("development").STAFF_MFA_REQUIRED is False
    assert load_settings("testing").STAFF_MFA_REQUIRED is False
    monkeypatch.setenv("STAFF_MFA_REQUIRED", "0")
    assert load_settings("production").STAFF_MFA_REQUIRED is False
    monkeypatch.setenv("STAFF_MFA_REQUIRED", "1")
    assert load_settings("development").STAFF_MFA_REQUIRED is True


def test_testing_turns_rate_limits_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings("testing")
    assert settings.RATELIMIT_ENABLED is False
    assert settings.PASSWORD_HASH_FAST is True  # type: ignore[attr-defined]
    monkeypatch.setenv("RATELIMIT_ENABLED", "1")
    assert load_settings("testing").RATELIMIT_ENABLED is True


def test_integer_settings_are_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_ACCESS_TOKEN_EXPIRES_SECONDS", "60")
    expires = load_settings("development").JWT_ACCESS_TOKEN_EXPIRES
    assert expires == timedelta(seconds=60)
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "sixteen")
    assert "MAX_CONTENT_LENGTH" in _refusal("development")


@pytest.mark.parametrize(
    "key",
    [
        "LOGIN_RATE_LIMIT_PER_USER",
        "LOGIN_RATE_LIMIT_PER_USERNAME",
        "LOGIN_RATE_LIMIT_PER_ADDRESS",
        "REGISTER_RATE_LIMIT_PER_ADDRESS",
        "UPLOAD_RATE_LIMIT_PER_ADDRESS",
    ],
)
@pytest.mark.parametrize("value", ["lots", "5", "0/minute", "-1/minute"])
def test_a_rate_limit_that_would_not_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    assert key in _refusal("development")


@pytest.mark.parametrize(
    ("value", "reason"), [("-1", "must be 0 or more"), ("one", "must be an integer")]
)
def test_a_trusted_proxy_count_that_is_no_count_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv("TRUSTED_PROXY_COUNT", value)
    assert f"TRUSTED_PROXY_COUNT {reason}" in _refusal("development")


def test_rate_limits_accept_the_limits_syntax(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGIN_RATE_LIMIT_PER_USER", "3 per minute;20/hour")
    assert load_settings("development").LOGIN_RATE_LIMIT_PER_USER == "3 per minute;20/hour"


def test_flask_config_carries_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, PRODUCTION_ENV)
    mapping = load_settings("production").as_flask_config()
    for key in ("SECRET_KEY", "DATABASE_URL", "MAX_CONTENT_LENGTH", "TESTING"):
        assert key in mapping
    assert "JWT_PRIVATE_KEY" not in mapping  # read by the app factory, never kept in app.config
    assert all(name.isupper() for name in mapping)


def test_secrets_are_kept_out_of_the_repr_and_unwrapped_for_flask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, PRODUCTION_ENV)
    settings = load_settings("production")
    _assert_no_value_disclosed(repr(settings))
    mapping = settings.as_flask_config()
    assert mapping["SECRET_KEY"] == SECRET
    assert mapping["NAME"] == "production"
    assert mapping["TESTING"] is False


def test_cors_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings("development").CORS_ORIGINS == []
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example,")
    assert load_settings("development").CORS_ORIGINS == ["https://a.example", "https://b.example"]


def test_a_setting_assigned_in_code_is_checked_as_the_environment_is() -> None:
    settings = config.Testing(DATABASE_URL=DATABASE_URL)
    assert settings.DATABASE_URL == DATABASE_URL
    settings.STORE_TIMEOUT_SECONDS = 1
    assert settings.STORE_TIMEOUT_SECONDS == 1
    with pytest.raises(ValueError, match="LOGIN_RATE_LIMIT_PER_USER"):
        settings.LOGIN_RATE_LIMIT_PER_USER = "lots"


def test_an_unparsable_boolean_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_JSON", "perhaps")
    message = _refusal("development")
    assert "LOG_JSON" in message
    assert "perhaps" not in message
