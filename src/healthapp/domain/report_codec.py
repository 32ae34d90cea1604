"""How a report is stored in its Redis hash (SPEC §7, §8): chunks, first page, timestamps.

A chunk is the document's content hash followed by zlib-compressed JSON: an array of
compact records ``[id, checkup_type, information, machine index, test_taken_by, taken_at µs,
taken_at text, created_at text]`` (timestamps are rendered once, by the sync). Machines are
stored once per user in the meta. The meta's chunk index ``[newest µs, oldest µs, count,
type mask]`` lets a reader fetch only the chunks a page with type and date filters needs.
A reader checks each chunk's hash against the meta's, so one that raced a rewrite notices
and reads again instead of mixing two versions.

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
        """The JSON body."""
        return zlib.decompress(self.compressed, _GZIP_OR_ZLIB)


def decode_first_page(stored: bytes, owner: bytes | None = None) -> StoredPage:
    """The version, ``synced_at`` and compressed body of a stored first page, with the
    report's stored ``owner`` field."""
    separator = stored.index(b"\x00", HASH_LENGTH)
    return StoredPage(
        version=stored[:HASH_LENGTH].decode(),
        synced_at=stored[HASH_LENGTH:separator].decode(),
        compressed=stored[separator + 1 :],
        owner=owner.decode() if owner is not None else None,
    )


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
