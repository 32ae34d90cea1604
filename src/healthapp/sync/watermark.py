"""The sync watermark: how far Redis has followed PostgreSQL, kept in both stores (SPEC §14).

Redis with an append-only file synced once a second (``appendfsync everysec``) may restart
without its last second of writes. A sync batch written in that second whose outbox rows
were deleted meanwhile would be lost for good: nothing in PostgreSQL would ask for it again.
So every batch, and every full rebuild, advances a sequence number in both stores:

* in PostgreSQL (``sync_watermark``), in the transaction that deletes the batch's outbox
  rows. Taking the number locks the row until that transaction ends, so the batches of
  every worker take their numbers, write Redis and commit one after the other;
* in Redis (``rpt:sync:watermark``), in the pipeline that writes the batch's reports and
  after them, by a script that refuses when Redis holds less than PostgreSQL committed.

Redis replays its append-only file in order, so a Redis holding number ``n`` holds every
report written before it. A Redis holding less than PostgreSQL lost writes of a committed
batch (or came back empty); one holding more than one past it describes a newer state than
this database's (PostgreSQL was restored from a backup). In either case, and when the reports
in Redis are of an older layout, the sync rebuilds every report into a new generation
(``passes.full_rebuild``), which leaves both stores holding the same number. Which reports
the lost writes held is not recorded anywhere, hence a whole rebuild.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import redis
from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects.postgresql import insert

from healthapp.domain.report_codec import LAYOUT_VERSION
from healthapp.domain.report_keys import CURRENT_GENERATION_KEY, WATERMARK_KEY
from healthapp.domain.sync_stats import NO_GENERATION, OLD_LAYOUT, REDIS_AHEAD, REDIS_BEHIND
from healthapp.models import SyncWatermark

# A Table (the mapping types it as any FromClause): INSERT ... ON CONFLICT needs one.
_WATERMARK = typing.cast(Table, SyncWatermark.__table__)
_ROW = 1
_COMMITTED = select(_WATERMARK.c.seq).where(_WATERMARK.c.id == _ROW)
_INSERT = insert(_WATERMARK).values(id=_ROW, seq=1)
_ADVANCE = _INSERT.on_conflict_do_update(
    index_elements=[_WATERMARK.c.id],
    set_={"seq": _WATERMARK.c.seq + 1, "advanced_at": func.clock_timestamp()},
).returning(_WATERMARK.c.seq)

SEQ_FIELD = "seq"
LAYOUT_FIELD = "layout"

#: KEYS[1] the watermark; ARGV[1] the number PostgreSQL committed last, ARGV[2] the batch's.
#: Refuses (0) when Redis holds less than PostgreSQL committed: it lost writes.
_ADVANCE_SCRIPT = """
local held = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if held < tonumber(ARGV[1]) then
    return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[2])
return 1
"""


class StoreBehindError(RuntimeError):
    """Redis holds an older watermark than PostgreSQL committed: it lost writes."""


@dataclass(frozen=True, slots=True)
class Watermarks:
    """The watermark each store holds, and the generation readers use."""

    committed: int
    held: int
    layout: int | None
    generation: int | None

    @property
    def rebuild_reason(self) -> str | None:
        """Why every report must be rebuilt, or ``None`` when Redis holds what it should."""
        if self.held < self.committed:
            return REDIS_BEHIND
        # One past: a batch that wrote Redis and died before its commit (its rows remain).
        if self.held > self.committed + 1:
            return REDIS_AHEAD
        if self.generation is None:
            return NO_GENERATION
        if self.layout is None or self.layout < LAYOUT_VERSION:
            return OLD_LAYOUT
        return None


def committed_watermark(*, conn: Connection) -> int:
    """The number of the last sync batch PostgreSQL committed (0 before the first)."""
    return int(conn.execute(_COMMITTED).scalar() or 0)


def advance_watermark(*, conn: Connection) -> int:
    """The next number, taken in the calling transaction: the row stays locked, so that no
    other batch writes Redis before this one commits or rolls back."""
    return int(conn.execute(_ADVANCE).scalar_one())


def read_watermarks(*, conn: Connection, redis_client: redis.Redis) -> Watermarks:
    """Both stores' watermarks: PostgreSQL's read first, so that a batch committing
    meanwhile (it wrote Redis before its commit) never makes Redis look behind."""
    committed = committed_watermark(conn=conn)
    pipe = redis_client.pipeline(transaction=False)
    pipe.hmget(WATERMARK_KEY, [SEQ_FIELD, LAYOUT_FIELD])
    pipe.get(CURRENT_GENERATION_KEY)
    (held, layout), generation = pipe.execute()
    return Watermarks(
        committed=committed,
        held=int(held) if held is not None else 0,
        layout=int(layout) if layout is not None else None,
        generation=int(generation) if generation is not None else None,
    )


def queue_advance(pipe: redis.client.Pipeline, *, seq: int) -> None:
    """Queue, after a batch's writes, Redis taking the batch's number ``seq`` unless it holds
    less than ``seq - 1`` (PostgreSQL's last); its reply is 1, or 0 for a Redis behind."""
    pipe.eval(_ADVANCE_SCRIPT, 1, WATERMARK_KEY, seq - 1, seq)


def record_rebuilt(*, redis_client: redis.Redis, seq: int) -> None:
    """After a full rebuild: Redis holds every report up to ``seq``, in this code's layout."""
    redis_client.hset(WATERMARK_KEY, mapping={SEQ_FIELD: seq, LAYOUT_FIELD: LAYOUT_VERSION})
