"""Extensions, created unbound here and bound to an app in its factory."""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask, g, request
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg 3 driver named, whatever form it was given in."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str, *, pool_size: int = 5, timeout_seconds: int = 3, statement_timeout_seconds: int = 0
) -> Engine:
    """An engine for ``url`` that fails fast when PostgreSQL is unreachable.

    ``statement_timeout_seconds`` (0: none) makes PostgreSQL cancel a statement that runs
    longer, one waiting on a lock too, so that no statement outlives the request behind it.
    """
    options = "-c timezone=UTC"
    if statement_timeout_seconds > 0:
        options += f" -c statement_timeout={statement_timeout_seconds}s"
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # Statement parameters are request data: keep them out of exception messages.
        hide_parameters=True,
        pool_timeout=timeout_seconds,
        connect_args={
            "connect_timeout": timeout_seconds,
            "application_name": "healthapp",
            "options": options,
        },
    )


def redis_options(*, timeout_seconds: float, retries: int = 1) -> dict[str, Any]:
    """Settings of every Redis client: it gives up quickly when Redis is unreachable.

    A dropped connection (Redis restarted) is retried ``retries`` times on a new one; a
    timeout is not: the server took the whole ``timeout_seconds`` not to answer, and a
    second wait would double the time a request takes to get its 503.
    """
    return {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry": Retry(NoBackoff(), retries, supported_errors=(redis.ConnectionError,)),
        "health_check_interval": 30,
    }


def make_redis(url: str, *, timeout_seconds: float = 3, retries: int = 1) -> redis.Redis:
    """A Redis client for ``url`` with :func:`redis_options`."""
    return redis.Redis.from_url(
        url, **redis_options(timeout_seconds=timeout_seconds, retries=retries)
    )


def run_command(client: redis.Redis, *args: Any) -> Any:
    """One command on one of ``client``'s pooled connections, with none of redis-py's
    per-command machinery (retries, response callbacks, telemetry): the raw reply.

    For the Reports API's hot path, where that machinery cost more CPU than the round
    trip; it raises on any error (the connection is dropped, never returned half-read),
    and the caller falls back to the full client, which retries.
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command(*args)
        return connection.read_response()
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


class Database:
    """One engine per app and one session per app context, removed at teardown."""

    def __init__(self) -> None:
        self._sessionmakers: dict[int, sessionmaker[Session]] = {}

    def init_app(self, app: Flask, engine: Engine | None = None) -> None:
        if engine is None:
            engine = make_engine(
                app.config["DATABASE_URL"],
                pool_size=app.config["DATABASE_POOL_SIZE"],
                timeout_seconds=app.config["STORE_TIMEOUT_SECONDS"],
                statement_timeout_seconds=app.config["STATEMENT_TIMEOUT_SECONDS"],
            )
        app.extensions["healthapp.db"] = engine
        self._sessionmakers[id(app)] = sessionmaker(engine, expire_on_commit=False)
        app.teardown_appcontext(self._remove_session)

    @property
    def engine(self) -> Engine:
        from flask import current_app

        engine: Engine = current_app.extensions["healthapp.db"]
        return engine

    @property
    def session(self) -> Session:
        """The current app context's session, opened on first use."""
        from flask import current_app

        if "db_session" not in g:
            g.db_session = self._sessionmakers[id(current_app._get_current_object())]()  # type: ignore[attr-defined]
        session: Session = g.db_session
        return session

    @staticmethod
    def _remove_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def login_username_key() -> str:
    """Rate-limit key for the per-user login limit: the username tried, not the address.

    A body that is not a JSON object with a string ``username`` is keyed by the address:
    the limit still counts it, and the view answers it 400 or 422. This must never raise:
    the limiter lets a request whose key failed through unlimited (and logs a traceback).
    """
    body = request.get_json(silent=True)  # orjson refuses nesting deeper than 1,024 levels
    username = body.get("username") if isinstance(body, dict) else None
    if not isinstance(username, str) or not username:
        return get_remote_address()
    return f"login-user:{username.lower()[:64]}"


db = Database()
jwt = JWTManager()
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
cors = CORS()
