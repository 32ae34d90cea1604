"""The bootstrap: every entry point's engine, sessions and Redis client, from settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
from sqlalchemy import text

from healthapp import bootstrap, config
from healthapp.config import ConfigurationError


def _statement_timeout(settings: config.Testing, **options: bool) -> str:
    engine = bootstrap.engine(settings, **options)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW statement_timeout")).scalar_one())
    finally:
        engine.dispose()


def test_only_an_engine_serving_requests_has_the_statement_timeout(database_url: str) -> None:
    settings = config.Testing(DATABASE_URL=database_url, STATEMENT_TIMEOUT_SECONDS=7)
    assert _statement_timeout(settings, serves_requests=True) == "7s"
    assert _statement_timeout(settings) == "0"  # the worker's passes and the commands


def test_sessions_keep_their_objects_readable_after_the_commit(database_url: str) -> None:
    engine = bootstrap.engine(config.Testing(DATABASE_URL=database_url))
    try:
        sessions = bootstrap.session_factory(engine)
        with sessions() as session:
            assert session.execute(text("SELECT 1")).scalar_one() == 1
            assert sessions.kw["expire_on_commit"] is False
    finally:
        engine.dispose()


def test_the_redis_client_answers_within_the_store_timeout(
    redis_url: str, redis_client: redis.Redis
) -> None:
    client = bootstrap.redis_client(config.Testing(REDIS_URL=redis_url, STORE_TIMEOUT_SECONDS=1))
    assert client.ping()
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 1
    longer = bootstrap.redis_client(config.Testing(REDIS_URL=redis_url), timeout_seconds=30)
    assert longer.connection_pool.connection_kwargs["socket_timeout"] == 30
    client.close()
    longer.close()


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL"])
def test_a_missing_store_url_is_named(missing: str) -> None:
    settings = config.Testing(DATABASE_URL=None, REDIS_URL=None)
    build = bootstrap.engine if missing == "DATABASE_URL" else bootstrap.redis_client
    with pytest.raises(ConfigurationError, match=missing):
        build(settings)


def test_importing_the_bootstrap_loads_no_sqlalchemy() -> None:
    probe = (
        "import sys, healthapp.bootstrap; "
        "assert not any(m.startswith('sqlalchemy') for m in sys.modules), 'sqlalchemy loaded'"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
