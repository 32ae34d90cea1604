"""Where the reports live in Redis (SPEC §7, §8): every key and hash field name.

The sync writes under these names and the Reports API reads them; both take them from here,
so the layout is defined once. Pure: no Redis client.

Keys (``<g>`` is the generation readers are pointed at by ``rpt:current``)::

    rpt:current                 the generation readers use (absent: no report was synced yet)
    rpt:seq                     counter the full rebuild takes new generation numbers from
    rpt:g<g>:users              sorted set of every username with a report (score 0, by name)
    rpt:g<g>:{u:<username>}     hash, one per user (hash tag: Redis Cluster keeps it whole):
        m                       meta: profile, diseases, machines, summary, chunk index
        h                       content hash of the document (its version)
        o                       the id of the user the report is of (``sub`` of their tokens)
        c<i>                    chunk i of the check-ups, newest first (``report_codec``)
        p                       the first page, rendered: what a client gets most often
    rpt:g<g>:{u:<username>}:new the next report while it is written; renamed over the live
                                key when whole (same hash tag: same Redis Cluster slot)
    rpt:sync:stats              hash of the sync passes' figures (``sync_stats``)
    rpt:sync:watermark          hash: ``seq``, the last sync batch Redis took (PostgreSQL keeps
                                the last one it committed), and ``layout``, the report layout
                                of the generation readers use (``sync.watermark``)
"""

from __future__ import annotations

from collections.abc import Iterable

CURRENT_GENERATION_KEY = "rpt:current"
GENERATION_SEQUENCE_KEY = "rpt:seq"
SYNC_STATS_KEY = "rpt:sync:stats"
WATERMARK_KEY = "rpt:sync:watermark"
#: Matches the keys of every generation.
ALL_GENERATIONS_PATTERN = "rpt:g*"
META_FIELD = "m"
HASH_FIELD = "h"
OWNER_FIELD = "o"
FIRST_PAGE_FIELD = "p"


def generation_prefix(generation: int) -> str:
    """The prefix of every key of ``generation``."""
    return f"rpt:g{generation}:"


def user_key(generation: int, username: str) -> str:
    """The hash holding ``username``'s report in ``generation``."""
    return f"rpt:g{generation}:{{u:{username}}}"


def staging_key(generation: int, username: str) -> str:
    """Where ``username``'s next report is written before it replaces the live one."""
    return f"{user_key(generation, username)}:new"


def users_index_key(generation: int) -> str:
    """The sorted set of usernames with a report in ``generation``."""
    return f"rpt:g{generation}:users"


def chunk_field(index: int) -> str:
    """The hash field of chunk ``index``."""
    return f"c{index}"


def username_from_key(key: str) -> str | None:
    """The username in a user key, or ``None`` for another key."""
    start = key.find("{u:")
    if start < 0 or not key.endswith("}"):
        return None
    return key[start + 3 : -1]


def usernames_of(keys: Iterable[bytes | str]) -> set[str]:
    """The usernames of the user keys among ``keys``."""
    names = set()
    for key in keys:
        name = username_from_key(key.decode() if isinstance(key, bytes) else key)
        if name is not None:
            names.add(name)
    return names
