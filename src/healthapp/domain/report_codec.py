"""How a report is stored in its Redis hash (SPEC §7, §8): chunks, first page, timestamps.

A chunk is the document's content hash followed by zlib-compressed JSON: an array of
compact records ``[id, checkup_type, information, machine index, test_taken_by, taken_at µs,
taken_at text, created_at text]`` (timestamps are rendered once, by the sync). Machines are
stored once per user in the meta. The meta's chunk index ``[newest µs, oldest µs, count,
type mask]`` lets a reader fetch only the chunks a page with type and date filters needs.
A reader checks each chunk's hash against the meta's, so one that raced a rewrite notices
and reads again instead of mixing two versions. A stored value that does not decode, or
decodes to another shape than the sync writes, raises :class:`CorruptValue`.

The first page (what the mobile app asks for each time it opens) is also stored as the
response body it is: the content hash, the ``synced_at`` text, a NUL byte, then the JSON
body as a gzip member. Serving it costs one command and no encoding; a client that
accepts gzip (every mobile HTTP stack does) gets those bytes as they are, and any other
client the body inflated. Pages stored before gzip hold a zlib stream instead, which is
always inflated.

Beside them the hash holds the id of the user the report is of (its owner), read with the
first page by the same command: a patient reads a report only if their token's ``sub`` is
that id, so a token of a deleted user never reads a later user who took the same name.

Pure: no database, no Redis client.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from healthapp.domain.report_keys import (
    FIRST_PAGE_FIELD,
    HASH_FIELD,
    META_FIELD,
    OWNER_FIELD,
    chunk_field,
)

#: Layout 2 records the owner's id; the sync rebuilds reports of an older layout.
LAYOUT_VERSION = 2
CHUNK_SIZE = 64
COMPRESSION_LEVEL = 1

# Positions in a compact check-up record.
R_ID, R_TYPE, R_INFO, R_MACHINE, R_TAKEN_BY, R_TAKEN_AT, R_TAKEN_AT_TEXT, R_CREATED_AT_TEXT = range(
    8
)
#: Length of the content hash (hex) that starts every stored chunk.
HASH_LENGTH = 20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GZIP_MAGIC = b"\x1f\x8b"
#: ``wbits`` that inflate a gzip member or a zlib stream, whichever it is.
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS
#: What the reader takes from the meta, and the type each must have.
_META_MEMBERS: dict[str, type | tuple[type, ...]] = {
    "username": str,
    "profile": (dict, type(None)),
    "diseases": list,
    "machines": list,
    "summary": dict,
    "count": int,
    "types": list,
    "chunks": list,
    "hash": str,
    "synced_at": str,
}


class CorruptValue(ValueError):
    """A stored value that does not decode, or decodes to another shape than the sync
    writes."""


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


def decode_chunk(
    stored: bytes, content_hash: str | None = None, *, machines: int | None = None
) -> list[list[Any]] | None:
    """The compact records of a stored chunk; ``None`` if it is of another version.

    ``machines``: how many machines the meta lists, which every record's machine index must
    be below. Raises :class:`CorruptValue` for a chunk that does not decode to records.
    """
    if content_hash is not None and stored[:HASH_LENGTH] != content_hash.encode():
        return None
    try:
        records = orjson.loads(zlib.decompress(stored[HASH_LENGTH:]))
    except (zlib.error, orjson.JSONDecodeError) as error:
        raise CorruptValue("the chunk does not inflate to JSON") from error
    if not isinstance(records, list) or not all(_is_record(record, machines) for record in records):
        raise CorruptValue("the chunk does not hold compact records")
    return records


def _is_record(record: Any, machines: int | None) -> bool:
    """Whether ``record`` has the fields a reader filters and renders by, of their types."""
    if not isinstance(record, list) or len(record) != R_CREATED_AT_TEXT + 1:
        return False
    machine = record[R_MACHINE]
    return (
        isinstance(record[R_ID], str)
        and isinstance(record[R_TYPE], str)
        and type(record[R_TAKEN_AT]) is int
        and type(machine) is int
        and (machines is None or 0 <= machine < machines)
    )


def decode_meta(stored: bytes) -> dict[str, Any]:
    """A user's stored meta; :class:`CorruptValue` unless it has the shape the sync writes."""
    try:
        meta = orjson.loads(stored)
    except orjson.JSONDecodeError as error:
        raise CorruptValue("the meta is not JSON") from error
    if not isinstance(meta, dict) or not all(
        isinstance(meta.get(name), kind) for name, kind in _META_MEMBERS.items()
    ):
        raise CorruptValue("the meta lacks a member or has one of another type")
    if not all(
        isinstance(entry, list) and len(entry) == 4 and all(type(n) is int for n in entry)
        for entry in meta["chunks"]
    ) or not all(isinstance(entry, list) and len(entry) == 3 for entry in meta["machines"]):
        raise CorruptValue("the meta's chunk index or machines have another shape")
    _check_timestamp(meta["synced_at"])
    return meta


def _check_timestamp(text: str) -> None:
    try:
        datetime.fromisoformat(text)
    except ValueError as error:
        raise CorruptValue("synced_at is not a timestamp") from error


def encode_first_page(content_hash: str, synced_at: str, body: dict[str, Any]) -> bytes:
    """The stored form of a rendered first page."""
    # mtime=0: the same page compresses to the same bytes on every rebuild.
    compressed = gzip.compress(orjson.dumps(body), COMPRESSION_LEVEL, mtime=0)
    return f"{content_hash}{synced_at}\x00".encode() + compressed


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A rendered first page as a reader gets it: its version, ``synced_at``, the
    compressed body and the owner's user id (``None`` in a report stored before owners)."""

    version: str
    synced_at: str
    compressed: bytes
    owner: str | None = None

    @property
    def gzip(self) -> bytes | None:
        """The body as a gzip member, to send as it is; ``None`` for an older zlib page."""
        return self.compressed if self.compressed.startswith(_GZIP_MAGIC) else None

    @property
    def body(self) -> bytes:
        """The JSON body; :class:`CorruptValue` if it does not inflate."""
        try:
            return zlib.decompress(self.compressed, _GZIP_OR_ZLIB)
        except zlib.error as error:
            raise CorruptValue("the first page does not inflate") from error


def decode_first_page(stored: bytes, owner: bytes | None = None) -> StoredPage:
    """The version, ``synced_at`` and compressed body of a stored first page, with the
    report's stored ``owner`` field.

    Raises :class:`CorruptValue` unless the header reads and the body starts as a gzip
    member or a zlib stream does. The body itself is inflated only for a client that does
    not take gzip (``StoredPage.body``): checking it on every read would cost the fast path
    an inflation a gzip client never needs.
    """
    separator = stored.find(b"\x00", HASH_LENGTH)
    if separator < 0:
        raise CorruptValue("the first page has no header")
    try:
        version = stored[:HASH_LENGTH].decode("ascii")
        synced_at = stored[HASH_LENGTH:separator].decode("ascii")
    except UnicodeDecodeError as error:
        raise CorruptValue("the first page's header is not text") from error
    _check_timestamp(synced_at)
    compressed = stored[separator + 1 :]
    if not (compressed.startswith(_GZIP_MAGIC) or _is_zlib_header(compressed[:2])):
        raise CorruptValue("the first page's body is neither gzip nor zlib")
    try:
        owner_id = owner.decode("ascii") if owner is not None else None
    except UnicodeDecodeError as error:
        raise CorruptValue("the report's owner is not text") from error
    return StoredPage(version=version, synced_at=synced_at, compressed=compressed, owner=owner_id)


def _is_zlib_header(header: bytes) -> bool:
    """Whether ``header`` opens a zlib stream (RFC 1950: deflate, and a valid check)."""
    return len(header) == 2 and header[0] & 0x0F == 8 and int.from_bytes(header) % 31 == 0


@dataclass
class ReportDocument:
    """One user's report as the sync writes it: the meta, the chunks and the first page,
    and the id of the user it is of."""

    username: str
    owner_id: str
    content_hash: str
    meta: dict[str, Any]
    chunks: list[bytes] = field(default_factory=list)
    first_page: bytes = b""

    def fields(self) -> dict[str, bytes | str]:
        """Every hash field of the user's key."""
        stored: dict[str, bytes | str] = {
            META_FIELD: orjson.dumps(self.meta),
            HASH_FIELD: self.content_hash,
            OWNER_FIELD: self.owner_id,
            FIRST_PAGE_FIELD: self.first_page,
        }
        for index, chunk in enumerate(self.chunks):
            stored[chunk_field(index)] = chunk
        return stored
