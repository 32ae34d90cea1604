"""Verifying the reports: every one in Redis compared with one freshly built from PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import Engine

from healthapp.domain.report_keys import (
    HASH_FIELD,
    generation_prefix,
    user_key,
    usernames_of,
    users_index_key,
)
from healthapp.sync.passes import Progress
from healthapp.sync.sources import assemble_reports, count_users, every_report_source
from healthapp.sync.watermark import read_watermarks
from healthapp.sync.writer import current_generation


@dataclass
class VerifyResult:
    """Reports in Redis compared with PostgreSQL."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    #: ``(Redis's, PostgreSQL's)`` sync watermark when Redis holds the older: it lost writes
    #: whose outbox rows were cleared, and the next pass rebuilds every report.
    behind: tuple[int, int] | None = None

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.orphaned or self.behind)


def verify(
    *,
    engine: Engine,
    redis_client: redis.Redis,
    batch_size: int = 500,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Compare every report in Redis with one freshly built from PostgreSQL, and the sync
    watermarks of the two stores."""
    result = VerifyResult()
    generation = current_generation(redis_client=redis_client)
    known: set[str] = set()
    with engine.connect() as conn:
        watermarks = read_watermarks(conn=conn, redis_client=redis_client)
        total = count_users(conn=conn)
        conn.commit()
    if watermarks.held < watermarks.committed:
        result.behind = (watermarks.held, watermarks.committed)
    if on_total is not None:
        on_total(total)
    for sources in every_report_source(engine=engine, batch_size=batch_size):
        names = sources.names
        reports = assemble_reports(sources)
        known.update(names)
        stored: list[Any] = [None] * len(names)
        if generation is not None:
            pipe = redis_client.pipeline(transaction=False)
            for name in names:
                pipe.hget(user_key(generation, name), HASH_FIELD)
            stored = pipe.execute()
        for name, version in zip(names, stored, strict=True):
            document = reports[name]
            result.checked += 1
            if version is None:
                result.missing.append(name)
            elif document is None or version.decode() != document.content_hash:
                result.stale.append(name)
        if progress is not None:
            progress(len(names))
    if generation is not None:
        in_store = usernames_of(
            redis_client.scan_iter(match=generation_prefix(generation) + "*", count=1000)
        )
        indexed = {m.decode() for m in redis_client.zrange(users_index_key(generation), 0, -1)}  # type: ignore[union-attr]
        result.orphaned = sorted((in_store | indexed) - known)
        result.missing = sorted(set(result.missing) | (known - indexed))
    return result
