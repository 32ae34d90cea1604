"""Writing reports to Redis, and the generations readers are switched between.

A full rebuild writes a new generation beside the one readers use and switches them to it
only if Redis still holds every report it wrote: a Redis that restarted empty half-way
would otherwise be handed a generation missing the first half, which no later incremental
pass would notice.
"""

from __future__ import annotations

import redis

from healthapp.domain.report_codec import ReportDocument
from healthapp.domain.report_keys import (
    ALL_GENERATIONS_PATTERN,
    CURRENT_GENERATION_KEY,
    GENERATION_SEQUENCE_KEY,
    generation_prefix,
    staging_key,
    user_key,
    users_index_key,
)
from healthapp.sync.watermark import StoreBehindError, queue_advance

#: Keys per UNLINK when a generation is dropped.
_UNLINK_BATCH = 1000

_LOST = (
    "Redis lost reports of generation {generation} while it was being built (did it restart?);"
    " readers were not switched to it. The next pass rebuilds every report."
)
_BEHIND = (
    "Redis holds an older sync watermark than the {seq} PostgreSQL committed: it lost writes"
    " (did it restart?). Every report is rebuilt."
)


class StoreLostError(RuntimeError):
    """Redis lost reports this pass wrote (it restarted empty); the next pass rebuilds."""


def current_generation(*, redis_client: redis.Redis) -> int | None:
    """The generation readers use, or ``None`` before the first sync."""
    value = redis_client.get(CURRENT_GENERATION_KEY)
    return int(value) if value is not None else None


def write_reports(
    *,
    redis_client: redis.Redis,
    generation: int,
    reports: dict[str, ReportDocument | None],
    watermark: int | None = None,
) -> None:
    """Replace these users' reports in ``generation`` (``None``: remove it) in one pipeline.

    Each report is written whole under a staging key and renamed over the live one, so a
    reader sees the old report or the new one, never a mix. No command spans two users:
    the staging key shares the user's hash tag, so on Redis Cluster both live in one slot,
    and the users index is updated by commands of its own.

    With ``watermark`` (the batch's number, ``sync.watermark``) the pipeline ends by
    advancing Redis's watermark to it, and raises ``StoreBehindError`` if Redis turned out
    to hold an older one than PostgreSQL: it lost writes, and every report is rebuilt.
    """
    index = users_index_key(generation)
    pipe = redis_client.pipeline(transaction=False)
    removed = []
    for username, document in reports.items():
        key = user_key(generation, username)
        if document is None:
            pipe.delete(key)
            removed.append(username)
            continue
        staging = staging_key(generation, username)
        pipe.delete(staging)
        pipe.hset(staging, mapping=document.fields())  # type: ignore[arg-type]
        pipe.rename(staging, key)
    present = {name: 0 for name, document in reports.items() if document is not None}
    if present:
        pipe.zadd(index, present)
    if removed:
        pipe.zrem(index, *removed)
    if watermark is not None:
        queue_advance(pipe, seq=watermark)
    replies = pipe.execute()
    if watermark is not None and not replies[-1]:
        raise StoreBehindError(_BEHIND.format(seq=watermark - 1))


def next_generation(*, redis_client: redis.Redis) -> int:
    """A generation number no rebuild used, above the one readers use."""
    current = current_generation(redis_client=redis_client) or 0
    generation = int(redis_client.incr(GENERATION_SEQUENCE_KEY))
    if generation <= current:
        generation = current + 1
        redis_client.set(GENERATION_SEQUENCE_KEY, generation)
    return generation


def switch_generation(*, redis_client: redis.Redis, generation: int, reports: int) -> None:
    """Point readers at ``generation`` if it holds the ``reports`` the rebuild wrote into it.

    Checked before the switch and again after it, as Redis may restart in between (the
    switch then lands in an empty store, and is taken back).
    """
    index = users_index_key(generation)
    if int(redis_client.zcard(index)) != reports:
        raise StoreLostError(_LOST.format(generation=generation))
    redis_client.set(CURRENT_GENERATION_KEY, generation)
    if int(redis_client.zcard(index)) != reports:
        redis_client.delete(CURRENT_GENERATION_KEY)
        raise StoreLostError(_LOST.format(generation=generation))


def drop_generations(
    *, redis_client: redis.Redis, keep: int | None, only: int | None = None
) -> int:
    """UNLINK the keys of every generation but ``keep`` (or only of ``only``), in batches."""
    pattern = generation_prefix(only) + "*" if only is not None else ALL_GENERATIONS_PATTERN
    kept = generation_prefix(keep) if keep is not None else None
    dropped = 0
    batch: list[bytes] = []
    for key in redis_client.scan_iter(match=pattern, count=_UNLINK_BATCH):
        if kept is not None and key.decode().startswith(kept):
            continue
        batch.append(key)
        if len(batch) >= _UNLINK_BATCH:
            dropped += int(redis_client.unlink(*batch))
            batch = []
    if batch:
        dropped += int(redis_client.unlink(*batch))
    return dropped
