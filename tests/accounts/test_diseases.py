"""A user's diseases over HTTP (SPEC §5): several per user, owner-only, paginated."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from healthapp.accounts.models import Disease
from healthapp.domain.roles import Role
from tests import factories
from tests.assertions import assert_problem, error_locs
from tests.factories import ApiClient

DISEASE_FIELDS = {"id", "name", "details", "diagnosed_on", "created_at"}


def _list(user: factories.TestUser) -> str:
    return f"/api/v1/users/{user.id}/diseases"


def _one(user: factories.TestUser, disease_id: str | uuid.UUID) -> str:
    return f"/api/v1/users/{user.id}/diseases/{disease_id}"


def _add(api: ApiClient, user: factories.TestUser, **fields: Any) -> dict[str, Any]:
    response = api.post(_list(user), as_=user, json={"name": "asthma", **fields})
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_patient_records_reads_changes_and_deletes_diseases(api: ApiClient) -> None:
    patient = api.user()
    asthma = _add(api, patient, details="mild, seasonal", diagnosed_on="2015-04-01")
    migraine = _add(api, patient, name="migraine")
    assert set(asthma) == DISEASE_FIELDS
    assert asthma["diagnosed_on"] == "2015-04-01"
    assert asthma["created_at"].endswith("Z")

    listing = api.get(_list(patient), as_=patient).json
    assert [d["id"] for d in listing["items"]] == [asthma["id"], migraine["id"]]
    assert listing["next_cursor"] is None

    assert api.get(_one(patient, asthma["id"]), as_=patient).json == asthma

    changed = api.patch(_one(patient, asthma["id"]), as_=patient, json={"details": None})
    assert changed.status_code == 200
    assert changed.json["details"] is None
    assert changed.json["name"] == "asthma"
    assert changed.json["diagnosed_on"] == "2015-04-01"

    assert api.delete(_one(patient, asthma["id"]), as_=patient).status_code == 204
    assert_problem(api.get(_one(patient, asthma["id"]), as_=patient), 404)
    remaining = api.get(_list(patient), as_=patient).json["items"]
    assert [d["id"] for d in remaining] == [migraine["id"]]


def test_patient_never_sees_another_patients_diseases(api: ApiClient) -> None:
    patient, other = api.user(), api.user()
    theirs = _add(api, other, name="diabetes")
    _add(api, patient, name="asthma")
    assert [d["name"] for d in api.get(_list(patient), as_=patient).json["items"]] == ["asthma"]
    # Their path, or their disease id under one's own path: both 404, nothing leaks.
    assert_problem(api.get(_list(other), as_=patient), 404)
    assert_problem(api.get(_one(other, theirs["id"]), as_=patient), 404)
    for response in (
        api.get(_one(patient, theirs["id"]), as_=patient),
        api.patch(_one(patient, theirs["id"]), as_=patient, json={"name": "x"}),
        api.delete(_one(patient, theirs["id"]), as_=patient),
    ):
        assert_problem(response, 404)
    assert_problem(api.post(_list(other), as_=patient, json={"name": "flu"}), 404)
    assert api.get(_one(other, theirs["id"]), as_=other).json["name"] == "diabetes"


def test_operator_reads_but_cannot_change_diseases(api: ApiClient) -> None:
    operator, patient = api.user(Role.OPERATOR), api.user()
    disease = _add(api, patient)
    assert len(api.get(_list(patient), as_=operator).json["items"]) == 1
    assert api.get(_one(patient, disease["id"]), as_=operator).status_code == 200
    assert_problem(api.post(_list(patient), as_=operator, json={"name": "flu"}), 403)
    assert_problem(api.patch(_one(patient, disease["id"]), as_=operator, json={"name": "x"}), 403)
    assert_problem(api.delete(_one(patient, disease["id"]), as_=operator), 403)


def test_admin_manages_anyones_diseases(api: ApiClient) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    response = api.post(_list(patient), as_=admin, json={"name": "flu"})
    assert response.status_code == 201
    disease_id = response.json["id"]
    assert (
        api.patch(_one(patient, disease_id), as_=admin, json={"name": "cold"}).json["name"]
        == "cold"
    )
    assert api.delete(_one(patient, disease_id), as_=admin).status_code == 204


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["name"]),
        ({"name": ""}, ["name"]),
        ({"name": None}, ["name"]),
        ({"name": "n" * 201}, ["name"]),
        ({"name": 12}, ["name"]),
        ({"name": "flu", "details": "d" * 5001}, ["details"]),
        ({"name": "flu", "details": ["a"]}, ["details"]),
        ({"name": "flu", "diagnosed_on": "2999-01-01"}, ["diagnosed_on"]),
        ({"name": "flu", "diagnosed_on": "1800-01-01"}, ["diagnosed_on"]),
        ({"name": "flu", "diagnosed_on": "2020-02-30"}, ["diagnosed_on"]),
        ({"name": "flu", "diagnosed_on": 0}, ["diagnosed_on"]),
        ({"name": "flu", "severity": "high"}, ["severity"]),
    ],
)
def test_invalid_disease_is_422(api: ApiClient, body: dict[str, Any], loc: list[str]) -> None:
    patient = api.user()
    problem = assert_problem(api.post(_list(patient), as_=patient, json=body), 422)
    assert error_locs(problem) == [loc]
    assert api.get(_list(patient), as_=patient).json["items"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": None}, ["name"]),
        ({"name": "n" * 201}, ["name"]),
        ({"diagnosed_on": "tomorrow"}, ["diagnosed_on"]),
        ({"user_id": str(uuid.uuid4())}, ["user_id"]),
    ],
)
def test_invalid_disease_patch_is_422(api: ApiClient, body: dict[str, Any], loc: list[str]) -> None:
    patient = api.user()
    disease = _add(api, patient)
    problem = assert_problem(api.patch(_one(patient, disease["id"]), as_=patient, json=body), 422)
    assert error_locs(problem) == [loc]
    assert api.get(_one(patient, disease["id"]), as_=patient).json == disease


def test_unknown_disease_is_404(api: ApiClient) -> None:
    patient = api.user()
    assert_problem(api.get(_one(patient, uuid.uuid4()), as_=patient), 404)
    assert_problem(api.get(_one(patient, "not-a-uuid"), as_=patient), 404)


def _insert_diseases(engine: Engine, user_id: uuid.UUID, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(Disease),
            [{"id": uuid.uuid4(), "user_id": user_id, "name": f"d{n}"} for n in range(count)],
        )


def test_list_default_limit_is_50(api: ApiClient, engine: Engine) -> None:
    patient = api.user()
    _insert_diseases(engine, patient.id, 51)  # one transaction: every created_at is equal
    first = api.get(_list(patient), as_=patient).json
    assert len(first["items"]) == 50
    assert first["next_cursor"]
    rest = api.get(f"{_list(patient)}?cursor={first['next_cursor']}", as_=patient).json
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    ids = [d["id"] for d in first["items"] + rest["items"]]
    assert len(set(ids)) == 51  # rows sharing a timestamp are neither skipped nor repeated


def test_list_limit_up_to_500(api: ApiClient, engine: Engine) -> None:
    patient = api.user()
    _insert_diseases(engine, patient.id, 3)
    page = api.get(f"{_list(patient)}?limit=500", as_=patient).json
    assert len(page["items"]) == 3
    assert_problem(api.get(f"{_list(patient)}?limit=501", as_=patient), 422)


def test_list_pages_in_order(api: ApiClient) -> None:
    patient = api.user()
    created = [_add(api, patient, name=f"condition {n}")["id"] for n in range(5)]
    seen, cursor = [], None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = api.get(_list(patient) + query, as_=patient).json
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created


def test_tampered_cursor_is_400(api: ApiClient) -> None:
    patient = api.user()
    _add(api, patient)
    _add(api, patient)
    cursor = api.get(f"{_list(patient)}?limit=1", as_=patient).json["next_cursor"]
    for tampered in (cursor[:-2], cursor + "x", "A" + cursor, "e30"):
        response = api.get(f"{_list(patient)}?cursor={tampered}", as_=patient)
        body = assert_problem(response, 400)
        assert error_locs(body) == [["query", "cursor"]]
