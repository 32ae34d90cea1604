"""A user's profile over HTTP (SPEC §5): one per user, owner-only, staff read it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from healthapp.domain.roles import Role
from tests import factories
from tests.assertions import assert_problem, error_locs
from tests.factories import ApiClient

PROFILE_FIELDS = {"avatar", "blood_group", "date_of_birth", "sex", "created_at", "updated_at"}
FULL = {
    "avatar": "https://cdn.example.com/avatars/1.png",
    "blood_group": "AB-",
    "date_of_birth": "1990-02-03",
    "sex": "female",
}


def _path(user: factories.TestUser | uuid.UUID) -> str:
    user_id = user if isinstance(user, uuid.UUID) else user.id
    return f"/api/v1/users/{user_id}/profile"


def test_patient_creates_reads_changes_and_deletes_their_profile(api: ApiClient) -> None:
    patient = api.user()
    created = api.post(_path(patient), as_=patient, json=FULL)
    assert created.status_code == 201, created.json
    assert set(created.json) == PROFILE_FIELDS
    assert {k: created.json[k] for k in FULL} == FULL
    assert created.json["created_at"].endswith("Z")

    read = api.get(_path(patient), as_=patient)
    assert read.status_code == 200
    assert read.json == created.json

    changed = api.patch(_path(patient), as_=patient, json={"blood_group": "O+"})
    assert changed.status_code == 200
    assert changed.json["blood_group"] == "O+"
    assert changed.json["sex"] == "female"  # fields not named are kept
    assert changed.json["updated_at"] >= created.json["updated_at"]
    assert changed.json["created_at"] == created.json["created_at"]

    assert api.delete(_path(patient), as_=patient).status_code == 204
    assert_problem(api.get(_path(patient), as_=patient), 404)


def test_empty_profile_is_allowed(api: ApiClient) -> None:
    patient = api.user()
    response = api.post(_path(patient), as_=patient, json={})
    assert response.status_code == 201
    assert response.json["blood_group"] is None


def test_null_clears_a_profile_field(api: ApiClient) -> None:
    patient = api.user()
    api.post(_path(patient), as_=patient, json=FULL)
    response = api.patch(_path(patient), as_=patient, json={"avatar": None, "sex": None})
    assert response.json["avatar"] is None
    assert response.json["sex"] is None
    assert response.json["blood_group"] == "AB-"


def test_second_profile_is_409(api: ApiClient) -> None:
    patient = api.user()
    assert api.post(_path(patient), as_=patient, json=FULL).status_code == 201
    assert_problem(api.post(_path(patient), as_=patient, json={"sex": "male"}), 409)
    assert api.get(_path(patient), as_=patient).json["sex"] == "female"


def test_missing_profile_is_404_for_read_change_and_delete(api: ApiClient) -> None:
    patient = api.user()
    assert_problem(api.get(_path(patient), as_=patient), 404)
    assert_problem(api.patch(_path(patient), as_=patient, json={"sex": "male"}), 404)
    assert_problem(api.delete(_path(patient), as_=patient), 404)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("blood_group", "C+"),
        ("blood_group", "ab-"),
        ("sex", "MALE"),
        ("sex", 1),
        ("date_of_birth", "2020-02-30"),
        ("date_of_birth", "03/02/1990"),
        ("date_of_birth", "2999-01-01"),
        ("date_of_birth", "1850-01-01"),
        ("date_of_birth", 631152000),
        ("avatar", "javascript:alert(1)"),
        ("avatar", "https://example.com/" + "a" * 2100),
        ("avatar", 5),
        ("height_cm", 180),
    ],
)
def test_invalid_profile_is_422_naming_the_field(api: ApiClient, field: str, value: Any) -> None:
    patient = api.user()
    for method in (api.post, api.patch):
        body = assert_problem(method(_path(patient), as_=patient, json={field: value}), 422)
        assert error_locs(body) == [[field]]
    assert_problem(api.get(_path(patient), as_=patient), 404)


def test_another_patients_profile_is_404_for_every_method(api: ApiClient) -> None:
    patient, other = api.user(), api.user()
    api.post(_path(other), as_=other, json=FULL)
    for response in (
        api.get(_path(other), as_=patient),
        api.post(_path(other), as_=patient, json={"sex": "male"}),
        api.patch(_path(other), as_=patient, json={"sex": "male"}),
        api.delete(_path(other), as_=patient),
    ):
        body = assert_problem(response, 404)
        assert "user" in body["detail"]  # the same answer as for a user that does not exist
    assert api.get(_path(other), as_=other).json["sex"] == "female"


def test_operator_reads_but_cannot_change_a_profile(api: ApiClient) -> None:
    operator, patient = api.user(Role.OPERATOR), api.user()
    api.post(_path(patient), as_=patient, json=FULL)
    assert api.get(_path(patient), as_=operator).json["blood_group"] == "AB-"
    assert_problem(api.patch(_path(patient), as_=operator, json={"sex": "male"}), 403)
    assert_problem(api.delete(_path(patient), as_=operator), 403)
    other = api.user()
    assert_problem(api.post(_path(other), as_=operator, json=FULL), 403)
    assert api.get(_path(patient), as_=patient).json["sex"] == "female"


def test_operator_manages_their_own_profile(api: ApiClient) -> None:
    operator = api.user(Role.OPERATOR)
    assert api.post(_path(operator), as_=operator, json=FULL).status_code == 201


def test_admin_manages_anyones_profile(api: ApiClient) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    assert api.post(_path(patient), as_=admin, json=FULL).status_code == 201
    assert api.patch(_path(patient), as_=admin, json={"sex": "male"}).json["sex"] == "male"
    assert api.delete(_path(patient), as_=admin).status_code == 204


def test_profile_of_unknown_user_is_404(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    assert_problem(api.post(_path(uuid.uuid4()), as_=admin, json=FULL), 404)
