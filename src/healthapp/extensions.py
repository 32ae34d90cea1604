"""Extensions, created unbound here and bound to an app in its factory, and the Redis clients.

Both APIs import this module; the database is :mod:`healthapp.database`, which only the write
side loads.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import redis
from flask import request
from flask_cors import CORS
from flask_limiter import Limiter
from redis.backoff import NoBackoff
from redis.retry import Retry


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


def run_commands(client: redis.Redis, *commands: tuple[Any, ...]) -> list[Any]:
    """Several commands in one round trip, as :func:`run_command` runs one: the raw replies,
    in order; any error drops the connection and is raised."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        return [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def client_address() -> str:
    """The client's address: the socket peer, or, with ``TRUSTED_PROXY_COUNT`` set, the
    address that many proxies back in ``X-Forwarded-For`` (``webapp.trust_proxies``).

    Every rate limit and every recorded address uses this one value, so a header the
    client wrote itself cannot move a request to another counter.
    """
    return request.remote_addr or "unknown"


def _login_username() -> str | None:
    """The username a login names, as a key part; ``None`` for a body without one.

    This must never raise: the limiter lets a request whose key failed through unlimited
    (and logs a traceback). Escaped, so that no username spells another one's key.
    """
    body = request.get_json(silent=True)  # orjson refuses nesting deeper than 1,024 levels
    username = body.get("username") if isinstance(body, dict) else None
    if not isinstance(username, str) or not username:
        return None
    return quote(username.lower()[:64], safe="")


def login_username_key() -> str:
    """Rate-limit key for the cap on failed logins per username, from every address.

    A body that is not a JSON object with a string ``username`` is keyed by the address;
    the view answers it 400 or 422, which the cap does not count.
    """
    username = _login_username()
    return f"login-user:{username}" if username else client_address()


def login_username_address_key() -> str:
    """Rate-limit key for logins per username from one address: a stranger's wrong
    passwords fill their own counter, never the one of the owner's address. A body without
    a string ``username`` is keyed by the address alone, and still counted."""
    username = _login_username()
    address = client_address()
    # "@" is escaped in the username and never in an address: one key, one pair.
    return f"login-user:{username}@{address}" if username else address


limiter = Limiter(key_func=client_address, headers_enabled=True)
cors = CORS()
