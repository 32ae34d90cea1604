"""The report document in Redis (SPEC §7, §8): key names and the stored encoding.

The sync writes this layout and the Reports API reads it; both use only this module, so the
shape is defined once. Pure: no database, no Redis client.

Keys (``<g>`` is the generation readers are pointed at by ``rpt:current``)::

    rpt:current                 the generation readers use (absent: no report was synced yet)
    rpt:seq                     counter the full rebuild takes new generation numbers from
    rpt:g<g>:users              sorted set of every username with a report (score 0, by name)
    rpt:g<g>:{u:<username>}     hash, one per user (hash tag: Redis Cluster keeps it whole):
        m                       meta: profile, diseases, machines, summary, chunk index
        h                       content hash of the document (its version)
        c<i>                    chunk i of the check-ups, newest first, CHUNK_SIZE per chunk
        p                       the first page, rendered: what a client gets most often
    rpt:g<g>:{u:<username>}:new the next report while it is written; renamed over the live
                                key when whole (same hash tag: same Redis Cluster slot)
    rpt:sync:stats              hash of the last sync pass's figures (observability)

A chunk is the document's content hash followed by zlib-compressed JSON: an array of
compact records ``[id, checkup_type, information, machine index, test_taken_by, taken_at µs,
taken_at text, created_at text]`` (timestamps are rendered once, by the sync). Machines are
stored once per user in the meta. The meta's chunk index ``[newest µs, oldest µs, count,
type mask]`` lets a reader fetch only the chunks a page with type and date filters needs.
A reader checks each chunk's hash against the meta's, so one that raced a rewrite notices
and reads again instead of mixing two versions.

The first page (the newest ``FIRST_PAGE_SIZE`` check-ups, no filter: what the mobile app
asks for each time it opens) is also stored as the response body it is, rendered by the
sync with the same functions a reader uses for any other page: the content hash, the
``synced_at`` text, a NUL byte, then the JSON body as a gzip member. Serving it costs one
field read and no encoding; a client that accepts gzip (every mobile HTTP stack does) gets
those bytes as they are, and any other client the body inflated. Pages stored before
gzip hold a zlib stream instead, which is always inflated.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from healthapp.domain.checkup_types import REGISTRY
from healthapp.domain.cursors import encode_cursor

LAYOUT_VERSION = 1
CHUNK_SIZE = 64
COMPRESSION_LEVEL = 1

CURRENT_GENERATION_KEY = "rpt:current"
GENERATION_SEQUENCE_KEY = "rpt:seq"
SYNC_STATS_KEY = "rpt:sync:stats"
META_FIELD = "m"
HASH_FIELD = "h"
FIRST_PAGE_FIELD = "p"
#: Check-ups on the stored first page: the default page size of the report (SPEC §3).
FIRST_PAGE_SIZE = 50

# Positions in a compact check-up record.
R_ID, R_TYPE, R_INFO, R_MACHINE, R_TAKEN_BY, R_TAKEN_AT, R_TAKEN_AT_TEXT, R_CREATED_AT_TEXT = range(
    8
)
#: Length of the content hash (hex) that starts every stored chunk.
HASH_LENGTH = 20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The summarised value of each check-up type.
_PRIMARY = {name: entry.primary for name, entry in REGISTRY.items()}


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


def username_from_key(key: str) -> str | None:
    """The username in a user key, or ``None`` for another key."""
    start = key.find("{u:")
    if start < 0 or not key.endswith("}"):
        return None
    return key[start + 3 : -1]


def chunk_field(index: int) -> str:
    """The hash field of chunk ``index``."""
    return f"c{index}"


def format_timestamp(moment: datetime) -> str:
    """A UTC ISO 8601 timestamp ending in ``Z`` (microseconds only when present)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_micros(moment: datetime) -> int:
    """An aware ``datetime`` as microseconds since the epoch."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_chunk(records: Sequence[Sequence[Any]]) -> tuple[bytes, bytes]:
    """``(raw JSON, compressed)`` of a chunk of compact records."""
    raw = orjson.dumps(records)
    return raw, zlib.compress(raw, COMPRESSION_LEVEL)


def decode_chunk(stored: bytes, content_hash: str | None = None) -> list[list[Any]] | None:
    """The compact records of a stored chunk; ``None`` if it is of another version."""
    if content_hash is not None and stored[:HASH_LENGTH] != content_hash.encode():
        return None
    records: list[list[Any]] = orjson.loads(zlib.decompress(stored[HASH_LENGTH:]))
    return records


def encode_first_page(content_hash: str, synced_at: str, body: dict[str, Any]) -> bytes:
    """The stored form of a rendered first page."""
    # mtime=0: the same page compresses to the same bytes on every rebuild.
    compressed = gzip.compress(orjson.dumps(body), COMPRESSION_LEVEL, mtime=0)
    return f"{content_hash}{synced_at}\x00".encode() + compressed


_GZIP_MAGIC = b"\x1f\x8b"
#: ``wbits`` that inflate a gzip member or a zlib stream, whichever it is.
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A rendered first page as a reader gets it: its version, ``synced_at`` and the
    compressed body."""

    version: str
    synced_at: str
    compressed: bytes

    @property
    def gzip(self) -> bytes | None:
        """The body as a gzip member, to send as it is; ``None`` for an older zlib page."""
        return self.compressed if self.compressed.startswith(_GZIP_MAGIC) else None

    @property
    def body(self) -> bytes:
        """The JSON body."""
        return zlib.decompress(self.compressed, _GZIP_OR_ZLIB)


def decode_first_page(stored: bytes) -> StoredPage:
    """The version, ``synced_at`` and compressed body of a stored first page."""
    separator = stored.index(b"\x00", HASH_LENGTH)
    return StoredPage(
        version=stored[:HASH_LENGTH].decode(),
        synced_at=stored[HASH_LENGTH:separator].decode(),
        compressed=stored[separator + 1 :],
    )


@dataclass
class ReportDocument:
    """One user's report as the sync writes it: the meta, the chunks and the first page."""

    username: str
    content_hash: str
    meta: dict[str, Any]
    chunks: list[bytes] = field(default_factory=list)
    first_page: bytes = b""

    def fields(self) -> dict[str, bytes | str]:
        """Every hash field of the user's key."""
        stored: dict[str, bytes | str] = {
            META_FIELD: orjson.dumps(self.meta),
            HASH_FIELD: self.content_hash,
            FIRST_PAGE_FIELD: self.first_page,
        }
        for index, chunk in enumerate(self.chunks):
            stored[chunk_field(index)] = chunk
        return stored


def assemble_document(
    *,
    username: str,
    profile: dict[str, Any] | None,
    diseases: list[dict[str, Any]],
    records: list[list[Any]],
    machines: dict[str, dict[str, Any]],
    synced_at: datetime,
) -> ReportDocument:
    """Encode a user's report; ``records`` are compact, newest first, machine as its id
    (replaced here by its index in the user's machines).

    The content hash covers everything but ``synced_at``: an unchanged report keeps its
    version (and its ETag) across rebuilds.
    """
    machine_index: dict[str, int] = {}
    machine_rows: list[list[Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    for record in records:
        machine_id = record[R_MACHINE]
        index = machine_index.get(machine_id)
        if index is None:
            index = machine_index[machine_id] = len(machine_rows)
            machine = machines.get(machine_id) or {}
            machine_rows.append(
                [machine_id, machine.get("machine_type"), machine.get("manufacturer")]
            )
        record[R_MACHINE] = index
        _summarise(summary, record)
    types = sorted(summary)
    bits = {name: 1 << position for position, name in enumerate(types)}
    digest = hashlib.blake2b(digest_size=10)
    core: dict[str, Any] = {
        "v": LAYOUT_VERSION,
        "username": username,
        "profile": profile,
        "diseases": diseases,
        "machines": machine_rows,
        "summary": summary,
        "count": len(records),
        "types": types,
    }
    digest.update(orjson.dumps(core))
    chunk_index: list[list[int]] = []
    chunks: list[bytes] = []
    for start in range(0, len(records), CHUNK_SIZE):
        part = records[start : start + CHUNK_SIZE]
        raw, stored = encode_chunk(part)
        digest.update(raw)
        chunks.append(stored)
        mask = 0
        for record in part:
            mask |= bits[record[R_TYPE]]
        chunk_index.append([part[0][R_TAKEN_AT], part[-1][R_TAKEN_AT], len(part), mask])
    content_hash = digest.hexdigest()
    prefix = content_hash.encode()
    chunks = [prefix + chunk for chunk in chunks]
    meta = {
        **core,
        "chunks": chunk_index,
        "hash": content_hash,
        "synced_at": format_timestamp(synced_at),
    }
    first_page = encode_first_page(content_hash, meta["synced_at"], first_page_body(meta, records))
    return ReportDocument(
        username=username,
        content_hash=content_hash,
        meta=meta,
        chunks=chunks,
        first_page=first_page,
    )


def first_page_body(meta: dict[str, Any], records: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The report with its first page of check-ups, from all its records newest first."""
    page = records[:FIRST_PAGE_SIZE]
    cursor = None
    if len(records) > FIRST_PAGE_SIZE:
        last = page[-1]
        cursor = encode_cursor([last[R_TAKEN_AT], last[R_ID]])
    return report_body(meta, page, cursor)


def _summarise(summary: dict[str, dict[str, Any]], record: Sequence[Any]) -> None:
    """Fold one check-up (records arrive newest first) into the per-type summary."""
    name = record[R_TYPE]
    entry = summary.get(name)
    if entry is None:
        entry = summary[name] = {"count": 0, "latest": None, "min": None, "max": None}
    entry["count"] += 1
    primary = _PRIMARY.get(name)
    value = record[R_INFO].get(primary) if primary else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if entry["latest"] is None:
        entry["latest"] = value
    if entry["min"] is None or value < entry["min"]:
        entry["min"] = value
    if entry["max"] is None or value > entry["max"]:
        entry["max"] = value


def type_mask(meta: dict[str, Any], checkup_type: str | None) -> int | None:
    """The chunk-index bit of ``checkup_type`` (``None``: no filter; 0: the user has none)."""
    if checkup_type is None:
        return None
    try:
        return 1 << meta["types"].index(checkup_type)
    except ValueError:
        return 0


def candidate_chunks(
    meta: dict[str, Any],
    *,
    mask: int | None,
    from_micros: int | None,
    to_micros: int | None,
    before_micros: int | None,
) -> list[int]:
    """Indices of the chunks, newest first, that may hold check-ups a page asks for.

    ``from`` is inclusive, ``to`` exclusive, ``before`` (the cursor's time) inclusive: ties
    on the cursor's time are settled by the check-up id when the records are read.
    """
    chosen = []
    for index, (newest, oldest, _count, chunk_mask) in enumerate(meta["chunks"]):
        if mask is not None and not chunk_mask & mask:
            continue
        if from_micros is not None and newest < from_micros:
            break  # every later chunk is older still
        if to_micros is not None and oldest >= to_micros:
            continue
        if before_micros is not None and oldest > before_micros:
            continue
        chosen.append(index)
    return chosen


def record_matches(
    record: Sequence[Any],
    *,
    checkup_type: str | None,
    from_micros: int | None,
    to_micros: int | None,
    after: tuple[int, str] | None,
) -> bool:
    """Whether a compact record belongs on a page with these filters, past the cursor."""
    taken = record[R_TAKEN_AT]
    if checkup_type is not None and record[R_TYPE] != checkup_type:
        return False
    if from_micros is not None and taken < from_micros:
        return False
    if to_micros is not None and taken >= to_micros:
        return False
    return after is None or (taken, record[R_ID]) < after


def machine_of(meta: dict[str, Any], index: int) -> dict[str, Any]:
    """The machine a record names by its index in the user's machines."""
    machine_id, machine_type, manufacturer = meta["machines"][index]
    return {"id": machine_id, "machine_type": machine_type, "manufacturer": manufacturer}


# Rendering (SPEC §7) --------------------------------------------------------------------


def checkup_item(meta: dict[str, Any], record: Sequence[Any]) -> dict[str, Any]:
    """A check-up of the single-user report."""
    return {
        "id": record[R_ID],
        "checkup_type": record[R_TYPE],
        "checkup": record[R_INFO],
        "machine": machine_of(meta, record[R_MACHINE]),
        "test_taken_by": record[R_TAKEN_BY],
        "taken_at": record[R_TAKEN_AT_TEXT],
        "created_at": record[R_CREATED_AT_TEXT],
    }


def report_body(
    meta: dict[str, Any], records: Sequence[Sequence[Any]], next_cursor: str | None
) -> dict[str, Any]:
    """The single-user report document with one page of check-ups."""
    return {
        "username": meta["username"],
        "profile": meta["profile"],
        "diseases": meta["diseases"],
        "checkups": [checkup_item(meta, record) for record in records],
        "next_cursor": next_cursor,
        "summary": meta["summary"],
        "synced_at": meta["synced_at"],
    }


def usernames_of(keys: Iterable[bytes | str]) -> set[str]:
    """The usernames of the user keys among ``keys``."""
    names = set()
    for key in keys:
        name = username_from_key(key.decode() if isinstance(key, bytes) else key)
        if name is not None:
            names.add(name)
    return names
