"""``run_command``: one bare command on a pooled connection, and a clean pool after errors."""

from __future__ import annotations

import pytest
import redis

from healthapp.extensions import make_redis, run_command


def test_answers_the_raw_reply(redis_url: str, redis_client: redis.Redis):
    redis_client.hset("{u:ann}:h", "p", b"page")
    client = make_redis(redis_url)
    assert run_command(client, "HGET", "{u:ann}:h", "p") == b"page"
    assert run_command(client, "HGET", "{u:ann}:h", "missing") is None
    entry = run_command(client, "XADD", "s", "MAXLEN", "~", 10, "*", "a", "1")
    assert redis_client.xrange("s")[0][0] == entry


def test_an_error_reply_raises_and_the_next_command_is_answered(
    redis_url: str, redis_client: redis.Redis
):
    redis_client.set("plain", "x")
    client = make_redis(redis_url)
    with pytest.raises(redis.ResponseError):
        run_command(client, "HGET", "plain", "p")  # wrong type
    assert run_command(client, "GET", "plain") == b"x"


def test_a_timed_out_connection_is_dropped_not_reused_half_read(
    redis_url: str, redis_client: redis.Redis
):
    redis_client.rpush("late", "a")
    client = make_redis(redis_url, timeout_seconds=0.2)
    with pytest.raises(redis.TimeoutError):
        run_command(client, "BLPOP", "empty", 1)  # answers after the timeout
    # Had the connection gone back to the pool, this would read BLPOP's late reply.
    assert run_command(client, "LRANGE", "late", 0, -1) == [b"a"]
