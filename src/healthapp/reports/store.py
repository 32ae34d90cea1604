"""Reading reports from Redis (never PostgreSQL): one user's page, and pages of users.

A page reads the generation pointer (cached for a second), the user's meta, and only the
chunks its filters and cursor can reach. A read that races a rewrite or a generation switch
notices a missing field and starts again.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis

from healthapp.domain.report_codec import (
    CHUNK_SIZE,
    R_CREATED_AT_TEXT,
    R_ID,
    R_INFO,
    R_TAKEN_AT,
    R_TYPE,
    StoredPage,
    decode_chunk,
    decode_first_page,
)
from healthapp.domain.report_keys import (
    CURRENT_GENERATION_KEY,
    FIRST_PAGE_FIELD,
    META_FIELD,
    OWNER_FIELD,
    SYNC_STATS_KEY,
    chunk_field,
    user_key,
    users_index_key,
)
from healthapp.domain.report_render import candidate_chunks, record_matches, type_mask
from healthapp.extensions import run_command

#: How long a process trusts the generation pointer before reading it again.
GENERATION_CACHE_SECONDS = 1.0
_ATTEMPTS = 3


class StoreChanged(Exception):
    """The report changed while it was being read; read it again."""


@dataclass(frozen=True, slots=True)
class CheckupFilter:
    """A page's filters, in microseconds since the epoch; the cursor is ``(time, id)``."""

    checkup_type: str | None = None
    from_micros: int | None = None
    to_micros: int | None = None
    after: tuple[int, str] | None = None


@dataclass
class ReportPage:
    """One user's report with one page of check-ups."""

    meta: dict[str, Any]
    records: list[list[Any]]
    next_key: tuple[int, str] | None

    @property
    def version(self) -> str:
        return str(self.meta["hash"])

    @property
    def synced_at(self) -> str:
        return str(self.meta["synced_at"])

    @property
    def owner(self) -> str | None:
        """The id of the user the report is of (``None``: stored before owners were)."""
        owner = self.meta.get("user_id")
        return str(owner) if owner is not None else None


class ReportStore:
    """The read side of the report store."""

    def __init__(self, redis_client: redis.Redis) -> None:
        self.redis = redis_client
        self._generation: int | None = None
        self._generation_read_at = -math.inf
        self._lock = threading.Lock()

    def generation(self, *, refresh: bool = False) -> int | None:
        """The generation readers use (``None`` before the first sync)."""
        now = time.monotonic()
        if refresh or now - self._generation_read_at > GENERATION_CACHE_SECONDS:
            value = self.redis.get(CURRENT_GENERATION_KEY)
            with self._lock:
                self._generation = int(value) if value is not None else None
                self._generation_read_at = now
        return self._generation

    def ping(self) -> None:
        """Raise unless Redis answers."""
        self.redis.ping()

    def first_page(self, username: str, *, lean: bool = False) -> StoredPage | None:
        """``username``'s stored first page with the report's owner, read by one command;
        ``None`` when there is none (no report, or one written before first pages were
        stored: read it with ``get_report``).

        ``lean`` reads it with one bare command (``run_command``: no retry), for a caller
        that falls back to the full path on any error.
        """
        for attempt in range(2):
            generation = self.generation(refresh=attempt > 0)
            if generation is None:
                return None
            key = user_key(generation, username)
            stored, owner = cast(
                list[bytes | None],
                run_command(self.redis, "HMGET", key, FIRST_PAGE_FIELD, OWNER_FIELD)
                if lean
                else self.redis.hmget(key, [FIRST_PAGE_FIELD, OWNER_FIELD]),
            )
            if stored is not None:
                return decode_first_page(stored, owner)
        return None

    def get_report(self, username: str, *, filters: CheckupFilter, limit: int) -> ReportPage | None:
        """``username``'s report with one page of check-ups, or ``None`` when there is none."""
        # Enough chunks for the page when nothing is filtered out; read with the meta.
        first = math.ceil((limit + 1) / CHUNK_SIZE) + 1
        fields = [META_FIELD, *(chunk_field(i) for i in range(first))]
        for attempt in range(_ATTEMPTS):
            generation = self.generation(refresh=attempt > 0)
            if generation is None:
                return None
            key = user_key(generation, username)
            raw, *prefetched = cast(list[bytes | None], self.redis.hmget(key, fields))
            if raw is None:
                if attempt == 0:
                    continue  # the pointer may have moved on: read it again
                return None
            meta = orjson.loads(raw)
            try:
                records, next_key = self._page(
                    key, meta, dict(enumerate(prefetched)), filters=filters, limit=limit
                )
            except StoreChanged:
                continue
            return ReportPage(meta=meta, records=records, next_key=next_key)
        raise StoreChanged

    def _page(
        self,
        key: str,
        meta: dict[str, Any],
        prefetched: dict[int, bytes | None],
        *,
        filters: CheckupFilter,
        limit: int,
    ) -> tuple[list[list[Any]], tuple[int, str] | None]:
        """Up to ``limit`` matching records, newest first, and the next page's position."""
        chunks = candidate_chunks(
            meta,
            mask=type_mask(meta, filters.checkup_type),
            from_micros=filters.from_micros,
            to_micros=filters.to_micros,
            before_micros=filters.after[0] if filters.after else None,
        )
        wanted = limit + 1
        found: list[list[Any]] = []
        step = max(2, len(prefetched))
        position = 0
        while position < len(chunks) and len(found) < wanted:
            indices = chunks[position : position + step]
            position += len(indices)
            missing = [i for i in indices if prefetched.get(i) is None]
            if missing:
                fetched = cast(
                    list[bytes | None], self.redis.hmget(key, [chunk_field(i) for i in missing])
                )
                prefetched.update(zip(missing, fetched, strict=True))
            step *= 2
            for index in indices:
                blob = prefetched.get(index)
                records = decode_chunk(blob, meta["hash"]) if blob is not None else None
                if records is None:
                    raise StoreChanged
                for record in records:
                    if record_matches(
                        record,
                        checkup_type=filters.checkup_type,
                        from_micros=filters.from_micros,
                        to_micros=filters.to_micros,
                        after=filters.after,
                    ):
                        found.append(record)
                        if len(found) >= wanted:
                            break
                if len(found) >= wanted:
                    break
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], (last[R_TAKEN_AT], last[R_ID])

    def list_usernames(self, *, after: str | None, limit: int) -> tuple[list[str], int | None]:
        """Up to ``limit`` + 1 usernames with a report, in order, after ``after``."""
        generation = self.generation()
        if generation is None:
            return [], None
        start = f"({after}" if after else "-"
        names = self.redis.zrangebylex(
            users_index_key(generation), start, "+", start=0, num=limit + 1
        )
        return [name.decode() for name in names], generation  # type: ignore[union-attr]

    def newest_checkups(
        self, usernames: Sequence[str], *, generation: int, per_user: int
    ) -> dict[str, tuple[dict[str, Any], list[list[Any]]]]:
        """Each user's meta and newest ``per_user`` records, in one round trip."""
        chunks = math.ceil(per_user / CHUNK_SIZE)
        fields = [META_FIELD, *(chunk_field(i) for i in range(chunks))]
        for _attempt in range(_ATTEMPTS):
            pipe = self.redis.pipeline(transaction=False)
            for name in usernames:
                pipe.hmget(user_key(generation, name), fields)
            result: dict[str, tuple[dict[str, Any], list[list[Any]]]] = {}
            try:
                for name, (raw, *blobs) in zip(usernames, pipe.execute(), strict=True):
                    if raw is None:
                        continue
                    meta = orjson.loads(raw)
                    wanted = min(per_user, meta["count"])
                    records: list[list[Any]] = []
                    for blob in blobs[: math.ceil(wanted / CHUNK_SIZE)]:
                        decoded = decode_chunk(blob, meta["hash"]) if blob is not None else None
                        if decoded is None:
                            raise StoreChanged
                        records.extend(decoded)
                    result[name] = (meta, records[:wanted])
            except StoreChanged:
                continue
            return result
        raise StoreChanged

    def sync_stats(self) -> dict[str, str]:
        """The figures of the last sync pass."""
        stats = self.redis.hgetall(SYNC_STATS_KEY)
        return {k.decode(): v.decode() for k, v in stats.items()}  # type: ignore[union-attr]


# Serialising ---------------------------------------------------------------------------


def listed_checkup_item(record: Sequence[Any]) -> dict[str, Any]:
    """A check-up of the all-users report (the seed's sample structure)."""
    return {
        "checkup": record[R_INFO],
        "checkup_type": record[R_TYPE],
        "created_at": record[R_CREATED_AT_TEXT],
    }


def entity_tag(*parts: str) -> str:
    """A strong ETag value for a response built from these versions and this query."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12)
    return digest.hexdigest()
