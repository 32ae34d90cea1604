"""Store URLs as they are given (SPEC §2) and as each library is handed them."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from healthapp.app import _limiter_storage
from healthapp.database import make_engine, sqlalchemy_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://ann@db.example/health", "postgresql+psycopg://ann@db.example/health"),
        ("postgresql://ann@db.example/health", "postgresql+psycopg://ann@db.example/health"),
        (
            "postgresql+psycopg://ann@db.example:5433/health",
            "postgresql+psycopg://ann@db.example:5433/health",
        ),
        (
            "postgres://ann:s3cret@db.example/health",
            "postgresql+psycopg://ann:s3cret@db.example/health",
        ),
        (
            "postgresql://ann@db.example/health?sslmode=require",
            "postgresql+psycopg://ann@db.example/health?sslmode=require",
        ),
    ],
)
def test_every_postgres_form_names_the_psycopg_driver(given: str, expected: str) -> None:
    assert sqlalchemy_url(given) == expected


def test_a_password_with_reserved_characters_survives() -> None:
    url = make_url(sqlalchemy_url("postgres://ann:p%40ss%3Aw%2Frd%25@db.example:5432/health"))
    assert url.drivername == "postgresql+psycopg"
    assert url.password == "p@ss:w/rd%"
    assert (url.username, url.host, url.port, url.database) == (
        "ann",
        "db.example",
        5432,
        "health",
    )


def test_the_query_survives() -> None:
    url = make_url(
        sqlalchemy_url(
            "postgresql://ann:pw@/health?host=/run/pg&sslmode=disable&application_name=x"
        )
    )
    assert url.drivername == "postgresql+psycopg"
    assert dict(url.query) == {"host": "/run/pg", "sslmode": "disable", "application_name": "x"}
    assert url.password == "pw"


def test_the_embedded_servers_url_keeps_its_empty_password_and_socket() -> None:
    url = make_url(sqlalchemy_url("postgresql://postgres:@/postgres?host=/run/pg"))
    assert (url.drivername, url.username, url.password) == ("postgresql+psycopg", "postgres", "")
    assert url.host is None
    assert url.query["host"] == "/run/pg"


def test_another_database_is_left_as_given() -> None:
    assert sqlalchemy_url("sqlite:///health.db") == "sqlite:///health.db"


def test_the_engine_is_built_on_psycopg() -> None:
    engine = make_engine("postgres://ann:pw@db.example/health")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.url.password == "pw"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("unix:///tmp/redis.sock?db=15", "redis+unix:///tmp/redis.sock?db=15"),
        ("redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15"),
        ("rediss://:pw@cache.example:6380/0", "rediss://:pw@cache.example:6380/0"),
    ],
)
def test_the_rate_limiter_is_given_its_own_name_for_a_unix_socket(
    given: str, expected: str
) -> None:
    assert _limiter_storage(given) == expected
