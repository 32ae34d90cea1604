"""Reading reports from Redis (never PostgreSQL): one user's page, and pages of users.

A page reads the generation pointer (cached for a second), the user's meta, and only the
chunks its filters and cursor can reach. A read that races a rewrite or a generation switch
notices a missing field and starts again; one that keeps losing the race is refused with
:class:`StoreChanged`. A stored value that does not decode is refused with
:class:`CorruptReport`. Both are 503s: the first passes once the writes stop, the second
once the sync rewrites the report.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis

from healthapp.domain.report_codec import (
    CHUNK_SIZE,
    R_CREATED_AT_TEXT,
    R_ID,
    R_INFO,
    R_TAKEN_AT,
    R_TYPE,
    CorruptValue,
    StoredPage,
    decode_chunk,
    decode_first_page,
    decode_meta,
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
from healthapp.errors import Unavailable
from healthapp.extensions import run_commands

#: How long a process trusts the generation pointer before reading it again.
GENERATION_CACHE_SECONDS = 1.0
_ATTEMPTS = 3


#: Seconds a reader refused with :class:`StoreChanged` is asked to wait: a rewrite of one
#: report takes milliseconds.
CHANGED_RETRY_AFTER_SECONDS = 1


class StoreChanged(Unavailable):
    """The report changed while it was being read. Within a read, read it again; raised
    out of the store when it changed under each of its tries (a 503 with ``Retry-After``)."""

    def __init__(self) -> None:
        super().__init__(
            "The report changed while it was being read; retry shortly.",
            retry_after=CHANGED_RETRY_AFTER_SECONDS,
        )


class CorruptReport(Unavailable):
    """A stored value of the reports does not decode (``part``: which one; ``username``:
    whose report, if it is one user's). Nothing a reader retries mends it: the sync's next
    write of that report does, or ``healthapp sync --full``."""

    def __init__(self, part: str, *, username: str | None = None) -> None:
        super().__init__("The stored report cannot be read; retry later.")
        self.part = part
        self.username = username


def first_page_body(stored: StoredPage, username: str) -> bytes:
    """The JSON body of ``username``'s stored first page, inflated."""
    try:
        return stored.body
    except CorruptValue:
        raise CorruptReport("first page", username=username) from None


def _is_wrong_type(error: redis.ResponseError) -> bool:
    """Whether Redis refused a command because the key holds another type of value."""
    return str(error).startswith("WRONGTYPE")


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
            try:
                generation = int(value) if value is not None else None
            except ValueError:
                raise CorruptReport("generation pointer") from None
            with self._lock:
                self._generation = generation
                self._generation_read_at = now
        return self._generation

    def ping(self) -> None:
        """Raise unless Redis answers."""
        self.redis.ping()

    def first_page(self, username: str) -> StoredPage | None:
        """``username``'s stored first page with the report's owner, read by one command;
        ``None`` when there is none (no report, or one written before first pages were
        stored: read it with ``get_report``)."""
        for attempt in range(2):
            generation = self.generation(refresh=attempt > 0)
            if generation is None:
                return None
            key = user_key(generation, username)
            with _readable(username):
                stored, owner = cast(
                    list[bytes | None], self.redis.hmget(key, [FIRST_PAGE_FIELD, OWNER_FIELD])
                )
                if stored is not None:
                    return decode_first_page(stored, owner)
        return None

    def first_page_checking(
        self, username: str, command: tuple[str, ...]
    ) -> tuple[StoredPage | None, Any]:
        """``username``'s stored first page with its owner and the reply to ``command``, sent
        in the same round trip (the token's revocation check), each with one bare command
        (``run_commands``: no retry), for a caller that falls back to the full path on any
        error."""
        reply = None
        for attempt in range(2):
            generation = self.generation(refresh=attempt > 0)
            if generation is None:
                return None, reply
            key = user_key(generation, username)
            with _readable(username):
                (stored, owner), reply = run_commands(
                    self.redis, ("HMGET", key, FIRST_PAGE_FIELD, OWNER_FIELD), command
                )
                if stored is not None:
                    return decode_first_page(stored, owner), reply
        return None, reply

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
            raw, *prefetched = self._hmget(key, fields, username)
            if raw is None:
                if attempt == 0:
                    continue  # the pointer may have moved on: read it again
                return None
            meta = _meta(raw, username)
            try:
                records, next_key = self._page(
                    key, username, meta, dict(enumerate(prefetched)), filters=filters, limit=limit
                )
            except StoreChanged:
                continue
            return ReportPage(meta=meta, records=records, next_key=next_key)
        raise StoreChanged

    def _hmget(self, key: str, fields: Sequence[str], username: str) -> list[bytes | None]:
        """``fields`` of ``username``'s report hash ``key``."""
        try:
            return cast(list[bytes | None], self.redis.hmget(key, fields))
        except redis.ResponseError as error:
            if _is_wrong_type(error):
                raise CorruptReport("report key", username=username) from None
            raise

    def _page(
        self,
        key: str,
        username: str,
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
                fetched = self._hmget(key, [chunk_field(i) for i in missing], username)
                prefetched.update(zip(missing, fetched, strict=True))
            step *= 2
            for index in indices:
                blob = prefetched.get(index)
                records = _chunk(blob, meta, index, username) if blob is not None else None
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
        names = cast(
            list[bytes],
            self.redis.zrangebylex(users_index_key(generation), start, "+", start=0, num=limit + 1),
        )
        try:
            return [name.decode() for name in names], generation
        except UnicodeDecodeError:
            raise CorruptReport("users index") from None

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
            replies = pipe.execute(raise_on_error=False)
            try:
                for name, reply in zip(usernames, replies, strict=True):
                    if isinstance(reply, redis.ResponseError):
                        if _is_wrong_type(reply):
                            raise CorruptReport("report key", username=name)
                        raise reply
                    raw, *blobs = reply
                    if raw is None:
                        continue
                    meta = _meta(raw, name)
                    wanted = min(per_user, meta["count"])
                    records: list[list[Any]] = []
                    for index, blob in enumerate(blobs[: math.ceil(wanted / CHUNK_SIZE)]):
                        decoded = _chunk(blob, meta, index, name) if blob is not None else None
                        if decoded is None:
                            raise StoreChanged
                        records.extend(decoded)
                    result[name] = (meta, records[:wanted])
            except StoreChanged:
                continue
            return result
        raise StoreChanged

    def sync_stats(self) -> dict[str, str]:
        """The figures of the last sync pass (a value that is not text reads as no number)."""
        stats = cast(dict[bytes, bytes], self.redis.hgetall(SYNC_STATS_KEY))
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in stats.items()}


def _meta(raw: bytes, username: str) -> dict[str, Any]:
    """``username``'s stored meta, decoded."""
    try:
        return decode_meta(raw)
    except CorruptValue:
        raise CorruptReport("meta", username=username) from None


def _chunk(blob: bytes, meta: dict[str, Any], index: int, username: str) -> list[list[Any]] | None:
    """Chunk ``index`` of ``username``'s report; ``None`` if it is of another version than
    ``meta``."""
    try:
        return decode_chunk(blob, meta["hash"], machines=len(meta["machines"]))
    except CorruptValue:
        raise CorruptReport(f"chunk {index}", username=username) from None


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


@contextmanager
def _readable(username: str) -> Iterator[None]:
    """Turn a stored first page that does not decode, or a report key of the wrong type,
    into ``CorruptReport`` (answered 503 and logged once)."""
    try:
        yield
    except redis.ResponseError as error:
        if _is_wrong_type(error):
            raise CorruptReport("report key", username=username) from None
        raise
    except CorruptValue:
        raise CorruptReport("first page", username=username) from None
