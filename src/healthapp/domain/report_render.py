"""The report a reader gets (SPEC §7): a document assembled once, pages rendered from it.

The sync assembles each user's document (meta, chunks, the rendered first page) and a
reader renders any other page with the same functions, so every page has one shape. Pure:
no database, no Redis client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from healthapp.domain.checkup_types import REGISTRY
from healthapp.domain.cursors import encode_cursor
from healthapp.domain.report_codec import (
    CHUNK_SIZE,
    LAYOUT_VERSION,
    R_CREATED_AT_TEXT,
    R_ID,
    R_INFO,
    R_MACHINE,
    R_TAKEN_AT,
    R_TAKEN_AT_TEXT,
    R_TAKEN_BY,
    R_TYPE,
    ReportDocument,
    encode_chunk,
    encode_first_page,
    format_timestamp,
)

#: Check-ups on the stored first page: the default page size of the report (SPEC §3).
FIRST_PAGE_SIZE = 50

#: The summarised value of each check-up type.
_PRIMARY = {name: entry.primary for name, entry in REGISTRY.items()}


def assemble_document(
    *,
    username: str,
    user_id: str,
    profile: dict[str, Any] | None,
    diseases: list[dict[str, Any]],
    records: list[list[Any]],
    machines: dict[str, dict[str, Any]],
    synced_at: datetime,
) -> ReportDocument:
    """Encode the report of user ``user_id``; ``records`` are compact, newest first, machine
    as its id (replaced here by its index in the user's machines).

    The content hash covers everything but ``synced_at``: an unchanged report keeps its
    version (and its ETag) across rebuilds, and a report that passes to another user of the
    same name (the first deleted) is a new version.
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
        "user_id": user_id,
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
        owner_id=user_id,
        content_hash=content_hash,
        meta=meta,
        chunks=chunks,
        first_page=first_page,
    )


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


# Filters --------------------------------------------------------------------------------


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


# Rendering ------------------------------------------------------------------------------


def machine_of(meta: dict[str, Any], index: int) -> dict[str, Any]:
    """The machine a record names by its index in the user's machines."""
    machine_id, machine_type, manufacturer = meta["machines"][index]
    return {"id": machine_id, "machine_type": machine_type, "manufacturer": manufacturer}


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


def first_page_body(meta: dict[str, Any], records: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The report with its first page of check-ups, from all its records newest first."""
    page = records[:FIRST_PAGE_SIZE]
    cursor = None
    if len(records) > FIRST_PAGE_SIZE:
        last = page[-1]
        cursor = encode_cursor([last[R_TAKEN_AT], last[R_ID]])
    return report_body(meta, page, cursor)
