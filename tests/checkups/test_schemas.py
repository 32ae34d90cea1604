"""Unit tests of the upload models: no database, no app.

The value ranges are those of SPEC §6, written out here so the registry is checked against
the specification rather than against itself.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthapp.checkups.schemas import (
    CheckupListQuery,
    EnvelopeError,
    TooManyItems,
    parse_bulk,
)
from healthapp.domain.checkup_types import REGISTRY
from tests.factories import SAMPLE_INFORMATION, checkup_item

USER = uuid.uuid4()
MACHINE = uuid.uuid4()

#: SPEC §6: (type, field) -> (low, high, kind); both ends inclusive.
SPEC_RANGES: dict[tuple[str, str], tuple[float, float, type]] = {
    ("blood_pressure", "systolic"): (40, 300, int),
    ("blood_pressure", "diastolic"): (20, 200, int),
    ("blood_pressure", "pulse"): (20, 300, int),
    ("heart_rate", "bpm"): (20, 300, int),
    ("spo2", "percent"): (50, 100, float),
    ("spo2", "pulse"): (20, 300, int),
    ("body_temperature", "celsius"): (25, 45, float),
    ("blood_glucose", "mg_dl"): (10, 1000, float),
    ("body_weight", "kg"): (0.5, 500, float),
    ("height", "cm"): (20, 272, float),
    ("ecg", "heart_rate"): (20, 300, int),
}


def body_of(*items: dict[str, Any]) -> bytes:
    # The standard library writes integers of any size, as a phone could.
    return json.dumps({"checkups": list(items)}).encode()


def parse_one(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of a one-item upload (empty when it is valid)."""
    parsed = parse_bulk(body_of(item), max_items=10)
    assert len(parsed.valid) + len({e["loc"][1] for e in parsed.errors}) == 1
    return parsed.errors


def with_information(checkup_type: str, **values: Any) -> dict[str, Any]:
    """A valid item of ``checkup_type`` whose information has ``values`` changed."""
    information = dict(SAMPLE_INFORMATION[checkup_type])
    if checkup_type == "blood_pressure":
        # Every in-range systolic is above, every in-range diastolic below, these.
        information.update(systolic=300, diastolic=20)
    information.update(values)
    return checkup_item(USER, MACHINE, checkup_type, information=information)


def test_every_spec_type_is_registered() -> None:
    assert set(REGISTRY) == {
        "blood_pressure",
        "heart_rate",
        "spo2",
        "body_temperature",
        "blood_glucose",
        "body_weight",
        "height",
        "ecg",
    }
    assert set(SAMPLE_INFORMATION) == set(REGISTRY)


@pytest.mark.parametrize("checkup_type", sorted(REGISTRY))
def test_a_sample_of_every_type_is_valid(checkup_type: str) -> None:
    assert parse_one(checkup_item(USER, MACHINE, checkup_type)) == []


def _in_range(low: float, high: float, kind: type) -> st.SearchStrategy[Any]:
    if kind is int:
        return st.integers(int(low), int(high))
    return st.floats(low, high, allow_nan=False) | st.integers(math.ceil(low), int(high))


def _out_of_range(low: float, high: float, kind: type) -> st.SearchStrategy[Any]:
    if kind is int:
        return st.integers(max_value=int(low) - 1) | st.integers(min_value=int(high) + 1)
    below = st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False)
    above = st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False)
    return below | above


@settings(max_examples=300, deadline=None)
@given(data=st.data(), key=st.sampled_from(sorted(SPEC_RANGES)))
def test_values_inside_the_spec_range_are_accepted(data: st.DataObject, key: Any) -> None:
    checkup_type, field = key
    value = data.draw(_in_range(*SPEC_RANGES[key]))
    item = with_information(checkup_type, **{field: value})
    assert parse_one(item) == []


@settings(max_examples=300, deadline=None)
@given(data=st.data(), key=st.sampled_from(sorted(SPEC_RANGES)))
def test_values_outside_the_spec_range_are_rejected_at_their_field(
    data: st.DataObject, key: Any
) -> None:
    checkup_type, field = key
    low, high, kind = SPEC_RANGES[key]
    value = data.draw(_out_of_range(low, high, kind))
    errors = parse_one(with_information(checkup_type, **{field: value}))
    assert ["checkups", 0, "information", field] in [e["loc"] for e in errors]


@given(systolic=st.integers(40, 300), diastolic=st.integers(20, 200))
def test_diastolic_must_be_below_systolic(systolic: int, diastolic: int) -> None:
    errors = parse_one(
        checkup_item(
            USER,
            MACHINE,
            "blood_pressure",
            information={"systolic": systolic, "diastolic": diastolic},
        )
    )
    assert (errors == []) == (diastolic < systolic)
    if errors:
        assert errors[0]["loc"] == ["checkups", 0, "information"]
        assert "below systolic" in errors[0]["msg"]


@given(text=st.text(max_size=1200))
def test_notes_are_optional_text_up_to_1000_characters(text: str) -> None:
    information = {**SAMPLE_INFORMATION["heart_rate"], "notes": text}
    errors = parse_one(checkup_item(USER, MACHINE, "heart_rate", information=information))
    # U+0000 is refused: PostgreSQL stores it in no text or JSONB column.
    assert (errors == []) == (len(text) <= 1000 and "\x00" not in text)


@pytest.mark.parametrize(
    ("checkup_type", "information", "field"),
    [
        ("heart_rate", {"bpm": "72"}, "bpm"),  # a string is not a number
        ("heart_rate", {"bpm": 72.5}, "bpm"),  # not a whole number
        ("heart_rate", {"bpm": True}, "bpm"),  # a boolean is not a number
        ("blood_glucose", {"mg_dl": 90, "fasting": 1}, "fasting"),
        ("blood_glucose", {"mg_dl": 90}, "fasting"),  # required
        ("ecg", {"rhythm": "wobbly", "heart_rate": 60}, "rhythm"),
        ("spo2", {"percent": 97, "oxygen": 1}, "oxygen"),  # unknown fields are rejected
    ],
)
def test_information_is_strict(checkup_type: str, information: dict[str, Any], field: str) -> None:
    errors = parse_one(checkup_item(USER, MACHINE, checkup_type, information=information))
    assert [e["loc"] for e in errors] == [["checkups", 0, "information", field]]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"taken_at": "2026-01-15T09:30:00"}, ["checkups", 0, "taken_at"]),  # no timezone
        ({"taken_at": "1899-12-31T23:00:00Z"}, ["checkups", 0, "taken_at"]),
        ({"taken_at": 1736933400}, ["checkups", 0, "taken_at"]),
        ({"id": "not-a-uuid"}, ["checkups", 0, "id"]),
        ({"user_id": None}, ["checkups", 0, "user_id"]),
        ({"created_at": "2026-01-15T09:30:00Z"}, ["checkups", 0, "created_at"]),
        ({"uploaded_by": str(uuid.uuid4())}, ["checkups", 0, "uploaded_by"]),
        ({"test_taken_by": "x" * 201}, ["checkups", 0, "test_taken_by"]),
        ({"checkup_type": "x-ray"}, ["checkups", 0, "checkup_type"]),
    ],
)
def test_item_fields_are_validated(fields: dict[str, Any], loc: list[Any]) -> None:
    item = {**checkup_item(USER, MACHINE), **fields}
    assert [e["loc"] for e in parse_one(item)] == [loc]


def test_a_missing_checkup_type_is_named() -> None:
    item = checkup_item(USER, MACHINE)
    del item["checkup_type"]
    assert [e["loc"] for e in parse_one(item)] == [["checkups", 0, "checkup_type"]]


def test_taken_at_may_be_a_little_ahead_but_not_in_the_future() -> None:
    soon = datetime.now(UTC) + timedelta(minutes=2)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert parse_one(checkup_item(USER, MACHINE, taken_at=soon.isoformat())) == []
    errors = parse_one(checkup_item(USER, MACHINE, taken_at=later.isoformat()))
    assert errors[0]["loc"] == ["checkups", 0, "taken_at"]
    assert "future" in errors[0]["msg"]


def test_taken_at_keeps_its_offset_as_an_instant() -> None:
    parsed = parse_bulk(
        body_of(checkup_item(USER, MACHINE, taken_at="2026-01-15T11:30:00+02:00")), max_items=1
    )
    assert parsed.valid[0][1].taken_at == datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def test_valid_items_are_kept_beside_the_errors_with_their_positions() -> None:
    items = [checkup_item(USER, MACHINE, "heart_rate") for _ in range(5)]
    items[1]["information"] = {"bpm": 1000}
    items[3]["taken_at"] = "yesterday"
    parsed = parse_bulk(body_of(*items), max_items=10)
    assert parsed.total == 5
    assert [index for index, _ in parsed.valid] == [0, 2, 4]
    assert [str(item.id) for _, item in parsed.valid] == [items[i]["id"] for i in (0, 2, 4)]
    assert [e["loc"][:2] for e in parsed.errors] == [["checkups", 1], ["checkups", 3]]


def test_errors_never_echo_the_input() -> None:
    item = checkup_item(USER, MACHINE, "heart_rate", information={"bpm": 987654})
    (error,) = parse_one(item)
    assert set(error) == {"loc", "msg", "type"}
    assert "987654" not in error["msg"]


def test_non_finite_numbers_are_rejected_and_the_rest_kept() -> None:
    good = orjson.dumps(checkup_item(USER, MACHINE, "spo2")).decode()
    bad = good.replace('"percent":98.0', '"percent":NaN')
    parsed = parse_bulk(f'{{"checkups": [{good}, {bad}]}}'.encode(), max_items=10)
    assert [i for i, _ in parsed.valid] == [0]
    assert parsed.errors[0]["loc"] == ["checkups", 1, "information", "percent"]


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'{"checkups": {}}',
        b'{"checkups": [], "extra": 1}',
        b'{"checkups": null}',
    ],
)
def test_a_body_that_is_not_an_upload_is_an_envelope_error(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_bulk(body, max_items=10)


def test_malformed_json_is_reported_as_such() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_bulk(b'{"checkups": [', max_items=10)
    assert caught.value.error.errors()[0]["type"] == "json_invalid"


def test_more_items_than_allowed_is_too_many_valid_or_not() -> None:
    items = [checkup_item(USER, MACHINE) for _ in range(4)]
    with pytest.raises(TooManyItems):
        parse_bulk(body_of(*items), max_items=3)
    items[0]["information"] = {}
    with pytest.raises(TooManyItems):
        parse_bulk(body_of(*items), max_items=3)


def test_list_query_reads_from_and_to() -> None:
    query = CheckupListQuery.model_validate(
        {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "limit": "10"}
    )
    assert query.from_ == datetime(2026, 1, 1, tzinfo=UTC)
    assert query.limit == 10
    with pytest.raises(ValueError, match="before"):
        CheckupListQuery.model_validate(
            {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        )


def test_implausible_times_join_the_other_errors_in_item_order() -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    items = [
        checkup_item(USER, MACHINE, taken_at=future),
        checkup_item(USER, MACHINE, "heart_rate", information={"bpm": "fast"}),
        checkup_item(USER, MACHINE),
        checkup_item(USER, MACHINE, taken_at="1850-06-01T12:00:00Z"),
    ]
    parsed = parse_bulk(body_of(*items), max_items=10)
    assert [index for index, _ in parsed.valid] == [2]
    assert [(e["loc"], e["msg"]) for e in parsed.errors] == [
        (["checkups", 0, "taken_at"], "taken_at must not be in the future"),
        (["checkups", 1, "information", "bpm"], "Input should be a valid integer"),
        (["checkups", 3, "taken_at"], "taken_at must not be before 1900"),
    ]
