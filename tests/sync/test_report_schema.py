"""The report bodies the sync renders are the documented ``ReportRead`` (SPEC §7)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from healthapp.domain.checkup_types import CHECKUP_TYPE_NAMES
from healthapp.domain.cursors import encode_cursor
from healthapp.domain.report_render import report_body
from healthapp.domain.roles import Role
from healthapp.reports.schemas import ReportRead
from healthapp.reports.store import CheckupFilter, ReportStore
from tests.factories import checkup_session

PROFILE = {
    "avatar": "https://cdn.example.com/avatars/7.png",
    "blood_group": "AB+",
    "date_of_birth": "1979-11-30",
    "sex": "male",
}


def validated(body: bytes) -> ReportRead:
    """``body`` as the schema reads it, failing on anything it does not document."""
    report = ReportRead.model_validate_json(body, strict=True)
    # Nothing beyond the schema either: dumped back, the model is the body itself.
    assert report.model_dump(mode="json") == orjson.loads(body)
    return report


def filtered_page(
    store: ReportStore, username: str, **filters: Any
) -> tuple[bytes, tuple[int, str] | None]:
    """A filtered page of three check-ups rendered as the Reports API does, and where the
    next page starts."""
    page = store.get_report(username, filters=CheckupFilter(**filters), limit=3)
    assert page is not None
    cursor = encode_cursor(list(page.next_key)) if page.next_key else None
    return orjson.dumps(report_body(page.meta, page.records, cursor)), page.next_key


@pytest.fixture
def patient(api: Any) -> Any:
    """A patient with a full profile, two diseases, and check-ups of every type from two
    machines (one of unknown manufacturer), more than a first page holds."""
    operator = api.user(Role.OPERATOR)
    patient = api.user()
    cuff = api.machine("blood_pressure", manufacturer="Cuff Co")
    monitor = api.machine("ecg", manufacturer=None)
    items = [
        *checkup_session(patient.id, monitor, 60),
        *checkup_session(patient.id, cuff, len(CHECKUP_TYPE_NAMES), start_minute=1000),
    ]
    assert api.post("/api/v1/checkups/", operator, json={"checkups": items}).status_code == 201
    profile = f"/api/v1/users/{patient.id}/profile"
    assert api.post(profile, patient, json=PROFILE).status_code == 201
    diseases = f"/api/v1/users/{patient.id}/diseases"
    asthma = {"name": "asthma", "details": "since childhood", "diagnosed_on": "1985-04-02"}
    assert api.post(diseases, patient, json=asthma).status_code == 201
    assert api.post(diseases, patient, json={"name": "hay fever"}).status_code == 201
    return patient


def test_first_page_is_a_report_read(patient, sync, store):
    sync()
    stored = store.first_page(patient.username)
    assert stored is not None

    report = validated(stored.body)

    assert report.username == patient.username
    assert report.profile is not None
    assert report.profile.blood_group == PROFILE["blood_group"]
    assert [d.name for d in report.diseases] == ["asthma", "hay fever"]
    assert {c.checkup_type for c in report.checkups} == set(CHECKUP_TYPE_NAMES)
    assert set(report.summary) == set(CHECKUP_TYPE_NAMES)
    assert {c.machine.manufacturer for c in report.checkups} == {"Cuff Co", None}
    assert len(report.checkups) == 50
    assert report.next_cursor is not None


def test_filtered_pages_are_report_reads(patient, sync, store):
    sync()
    body, after = filtered_page(store, patient.username, checkup_type="ecg")
    first = validated(body)
    assert [c.checkup_type for c in first.checkups] == ["ecg"] * 3
    assert first.next_cursor is not None

    body, _ = filtered_page(store, patient.username, checkup_type="ecg", after=after)
    second = validated(body)
    assert [c.checkup_type for c in second.checkups] == ["ecg"] * 3
    assert second.checkups[0].taken_at < first.checkups[-1].taken_at


def test_empty_report_is_a_report_read(api, sync, store):
    user = api.user()
    sync()
    stored = store.first_page(user.username)
    assert stored is not None

    report = validated(stored.body)

    assert report.profile is None
    assert report.diseases == report.checkups == []
    assert report.summary == {}
    assert report.next_cursor is None
    body, after = filtered_page(store, user.username, checkup_type="heart_rate")
    assert after is None
    assert validated(body).checkups == []


@pytest.mark.parametrize(
    "path",
    [("synced_at",), ("profile", "created_at"), ("checkups", 0, "machine"), ("diseases", 1, "id")],
)
def test_a_body_missing_a_required_field_is_refused(patient, sync, store, path):
    sync()
    stored = store.first_page(patient.username)
    assert stored is not None
    body = orjson.loads(stored.body)
    holder = body
    for step in path[:-1]:
        holder = holder[step]
    del holder[path[-1]]

    with pytest.raises(ValidationError) as refused:
        ReportRead.model_validate_json(orjson.dumps(body), strict=True)

    assert [error["loc"] for error in refused.value.errors()] == [path]
