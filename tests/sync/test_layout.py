"""The report layout on its own: encoding, chunk selection, record filters (no servers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from healthapp.domain.report_codec import CHUNK_SIZE, R_MACHINE, decode_chunk, to_micros
from healthapp.domain.report_keys import user_key, username_from_key
from healthapp.domain.report_render import (
    assemble_document,
    candidate_chunks,
    record_matches,
    type_mask,
)

START = datetime(2025, 1, 1, tzinfo=UTC)
OWNER = str(uuid.uuid4())


def records(count: int, machine: str) -> list[list]:
    """Compact records, newest first, alternating two types, a minute apart."""
    rows = []
    for n in range(count):
        moment = START - timedelta(minutes=n)
        kind = "heart_rate" if n % 2 else "body_weight"
        info = {"bpm": 60 + n % 9} if n % 2 else {"kg": 70.5}
        rows.append([str(uuid.uuid4()), kind, info, machine, None, to_micros(moment), "t", "c"])
    return rows


def document(count: int = 150, synced_at: datetime = START):
    machine = str(uuid.uuid4())
    return assemble_document(
        username="alice",
        user_id=OWNER,
        profile=None,
        diseases=[],
        records=records(count, machine),
        machines={machine: {"machine_type": "scale", "manufacturer": "Acme"}},
        synced_at=synced_at,
    )


def test_keys_share_one_hash_tag_per_user():
    key = user_key(3, "alice.b")
    assert key == "rpt:g3:{u:alice.b}"
    assert username_from_key(key) == "alice.b"
    assert username_from_key("rpt:g3:users") is None


def test_document_chunks_machines_and_summary():
    doc = document(150)
    assert len(doc.chunks) == 3  # 64 + 64 + 22
    assert [entry[2] for entry in doc.meta["chunks"]] == [CHUNK_SIZE, CHUNK_SIZE, 22]
    assert doc.meta["machines"][0][1:] == ["scale", "Acme"]
    first = decode_chunk(doc.chunks[0], doc.content_hash)
    assert first is not None
    assert first[0][R_MACHINE] == 0
    assert doc.meta["summary"]["heart_rate"]["count"] == 75
    assert doc.meta["summary"]["body_weight"] == {
        "count": 75,
        "latest": 70.5,
        "min": 70.5,
        "max": 70.5,
    }
    assert decode_chunk(doc.chunks[0], "0" * 20) is None  # another version


def test_content_hash_ignores_synced_at_only():
    machine = str(uuid.uuid4())
    rows = records(10, machine)

    def build(synced_at: datetime, profile=None):
        return assemble_document(
            username="alice",
            user_id=OWNER,
            profile=profile,
            diseases=[],
            records=[list(r) for r in rows],
            machines={},
            synced_at=synced_at,
        )

    assert build(START).content_hash == build(START + timedelta(days=1)).content_hash
    assert build(START).content_hash != build(START, profile={"sex": "female"}).content_hash


def test_chunk_selection_skips_what_a_page_cannot_need():
    meta = document(200).meta  # chunks of 64 minutes each, newest first
    everything = candidate_chunks(
        meta, mask=None, from_micros=None, to_micros=None, before_micros=None
    )
    assert everything == [0, 1, 2, 3]
    assert (
        candidate_chunks(meta, mask=0, from_micros=None, to_micros=None, before_micros=None) == []
    )
    recent = to_micros(START - timedelta(minutes=10))
    assert candidate_chunks(
        meta, mask=None, from_micros=recent, to_micros=None, before_micros=None
    ) == [0]
    old = to_micros(START - timedelta(minutes=130))
    assert candidate_chunks(
        meta, mask=None, from_micros=None, to_micros=None, before_micros=old
    ) == [
        2,
        3,
    ]
    assert type_mask(meta, "heart_rate") in (1, 2)
    assert type_mask(meta, "ecg") == 0


def test_record_filters_and_cursor_ties():
    row = [("b" * 8), "heart_rate", {}, 0, None, 100, "t", "c"]
    assert record_matches(row, checkup_type=None, from_micros=None, to_micros=None, after=None)
    assert not record_matches(row, checkup_type="ecg", from_micros=None, to_micros=None, after=None)
    assert record_matches(row, checkup_type=None, from_micros=100, to_micros=101, after=None)
    assert not record_matches(row, checkup_type=None, from_micros=None, to_micros=100, after=None)
    # Same time as the cursor: the id decides (newest first means descending ids).
    assert record_matches(
        row, checkup_type=None, from_micros=None, to_micros=None, after=(100, "c")
    )
    assert not record_matches(
        row, checkup_type=None, from_micros=None, to_micros=None, after=(100, "a")
    )
