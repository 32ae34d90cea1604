"""Request models of accounts, machines and tokens: strict types, no unknown fields."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from healthapp.accounts.schemas import (
    DiseaseCreate,
    DiseaseUpdate,
    ProfileCreate,
    UserCreate,
    UserListQuery,
    UserUpdate,
)
from healthapp.domain.roles import Role
from healthapp.machines.schemas import MachineCreate, MachineUpdate
from healthapp.sessions.schemas import TokenCreate

USER = {"username": "alice", "email": "alice@example.com", "password": "0123456789"}


def _errors(model: type[BaseModel], body: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(orjson.dumps(body))
    return [tuple(e["loc"]) for e in caught.value.errors()]


def test_username_is_lowercased() -> None:
    user = UserCreate.model_validate_json(orjson.dumps({**USER, "username": "Alice.Smith"}))
    assert user.username == "alice.smith"
    assert UserListQuery.model_validate({"username": "ALICE"}).username == "alice"


@pytest.mark.parametrize(
    "username", ["al", "a" * 33, "al ice", "al!ce", "élise", "", " alice", 12345, None, ["a"]]
)
def test_username_format_is_enforced(username: object) -> None:
    assert _errors(UserCreate, {**USER, "username": username}) == [("username",)]


def test_username_limits_are_inclusive() -> None:
    for username in ("abc", "a" * 32, "a.b_c-9"):
        UserCreate.model_validate_json(orjson.dumps({**USER, "username": username}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a" * 250 + "@example.com"),
        ("password", "012345678"),
        ("password", "p" * 257),
        ("password", 1234567890),
        ("role", "superuser"),
        ("role", None),
    ],
)
def test_user_fields_are_validated(field: str, value: object) -> None:
    assert _errors(UserCreate, {**USER, field: value}) == [(field,)]


def test_unknown_fields_are_rejected_everywhere() -> None:
    for model, body in (
        (UserCreate, {**USER, "is_admin": True}),
        (UserUpdate, {"username": "mallory"}),
        (ProfileCreate, {"weight": 70}),
        (DiseaseCreate, {"name": "flu", "user_id": "x"}),
        (MachineCreate, {"machine_type": "ecg", "serial_number": "S1", "id": "x"}),
        (TokenCreate, {"username": "a", "password": "b", "remember": True}),
    ):
        assert ("extra_forbidden",) in {(e["type"],) for e in _raw_errors(model, body)}


def _raw_errors(model: type[BaseModel], body: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(orjson.dumps(body))
    return caught.value.errors()


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None])
def test_booleans_are_not_coerced(value: object) -> None:
    body = {"machine_type": "ecg", "serial_number": "S1", "active": value}
    assert _errors(MachineCreate, body) == [("active",)]


@pytest.mark.parametrize("value", [0, 1_700_000_000, "2020-01-01T00:00:00", "20200101", 1.5])
def test_dates_must_be_iso_dates(value: object) -> None:
    assert _errors(DiseaseCreate, {"name": "flu", "diagnosed_on": value}) == [("diagnosed_on",)]


def test_dates_must_be_plausible() -> None:
    tomorrow_everywhere = (datetime.now(UTC) + timedelta(days=2)).date()
    for value in (tomorrow_everywhere, date(1899, 12, 31)):
        assert _errors(ProfileCreate, {"date_of_birth": value.isoformat()}) == [("date_of_birth",)]
    today = datetime.now(UTC).date().isoformat()
    assert ProfileCreate.model_validate_json(orjson.dumps({"date_of_birth": today}))
    assert DiseaseCreate.model_validate_json(
        orjson.dumps({"name": "flu", "diagnosed_on": "1900-01-01"})
    )


def test_strings_are_not_coerced_from_numbers() -> None:
    assert _errors(DiseaseCreate, {"name": 42}) == [("name",)]
    assert _errors(MachineCreate, {"machine_type": 1, "serial_number": 2}) == [
        ("machine_type",),
        ("serial_number",),
    ]


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (UserUpdate, "email"),
        (UserUpdate, "password"),
        (UserUpdate, "role"),
        (DiseaseUpdate, "name"),
        (MachineUpdate, "machine_type"),
        (MachineUpdate, "serial_number"),
        (MachineUpdate, "active"),
    ],
)
def test_required_fields_cannot_be_nulled_by_patch(model: type[BaseModel], field: str) -> None:
    assert _errors(model, {field: None}) == [(field,)]


def test_patch_of_optional_fields_may_clear_them() -> None:
    update = DiseaseUpdate.model_validate_json(b'{"details": null, "diagnosed_on": null}')
    assert update.model_fields_set == {"details", "diagnosed_on"}
    assert update.details is None


def test_role_accepts_its_json_value() -> None:
    user = UserCreate.model_validate_json(orjson.dumps({**USER, "role": "operator"}))
    assert user.role is Role.OPERATOR
    assert UserCreate(**USER, role=Role.ADMIN).role is Role.ADMIN


def test_avatar_must_be_an_http_url() -> None:
    for avatar in ("javascript:alert(1)", "ftp://example.com/a.png", "not a url"):
        assert _errors(ProfileCreate, {"avatar": avatar}) == [("avatar",)]
    profile = ProfileCreate.model_validate_json(b'{"avatar": "https://cdn.example.com/a.png"}')
    assert profile.avatar == "https://cdn.example.com/a.png"


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (DiseaseCreate, {"name": "n" * 201}, "name"),
        (DiseaseCreate, {"name": "flu", "details": "d" * 5001}, "details"),
        (ProfileCreate, {"avatar": "https://example.com/" + "a" * 2048}, "avatar"),
        (MachineCreate, {"machine_type": "t" * 65, "serial_number": "S"}, "machine_type"),
        (MachineCreate, {"machine_type": "ecg", "serial_number": "s" * 129}, "serial_number"),
        (
            MachineCreate,
            {"machine_type": "ecg", "serial_number": "S", "manufacturer": "m" * 201},
            "manufacturer",
        ),
        (TokenCreate, {"username": "u" * 65, "password": "p"}, "username"),
        (TokenCreate, {"username": "u", "password": "p" * 257}, "password"),
    ],
)
def test_over_long_strings_are_rejected(
    model: type[BaseModel], body: dict[str, Any], field: str
) -> None:
    assert _errors(model, body) == [(field,)]


@pytest.mark.parametrize(
    "model",
    [
        "healthapp.checkups.schemas:CheckupListQuery",
        "healthapp.reports.schemas:ReportQuery",
        "healthapp.audit.schemas:AuditEventListQuery",
    ],
)
def test_every_time_range_is_ordered_and_has_timezones(model: str) -> None:
    import importlib

    module, _, name = model.partition(":")
    query: type[BaseModel] = getattr(importlib.import_module(module), name)
    ordered = query.model_validate({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})
    assert ordered.model_dump()["from_"] < ordered.model_dump()["to"]
    for bad in (
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"from": "2026-01-01T00:00:00"},
    ):
        with pytest.raises(ValidationError):
            query.model_validate(bad)


def test_blood_group_and_sex_are_one_list_each() -> None:
    from sqlalchemy import CheckConstraint

    from healthapp.accounts.models import Profile
    from healthapp.domain.profiles import BLOOD_GROUPS, SEXES, BloodGroup, Sex

    profile = ProfileCreate.model_validate_json(b'{"blood_group": "AB+", "sex": "intersex"}')
    assert profile.blood_group is BloodGroup.AB_POSITIVE
    assert profile.sex is Sex.INTERSEX
    assert ProfileCreate(blood_group="O-").blood_group is BloodGroup.O_NEGATIVE  # type: ignore[arg-type]
    checks = [c for c in Profile.__table__.constraints if isinstance(c, CheckConstraint)]
    constraints = " ".join(str(c.sqltext) for c in checks)
    assert all(f"'{value}'" in constraints for value in (*BLOOD_GROUPS, *SEXES))
    assert _errors(ProfileCreate, {"blood_group": "C+"}) == [("blood_group",)]
