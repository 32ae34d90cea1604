"""Request and response models of the accounts domain."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BeforeValidator,
    EmailStr,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from healthapp.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from healthapp.domain.roles import Role
from healthapp.pagination import PageQuery
from healthapp.schemas_common import LongText, Page, RequestModel, ResponseModel, ShortText


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


#: Usernames are case-insensitive: ``Alice`` registers (and logs in) as ``alice``.
Username = Annotated[
    str, BeforeValidator(_lowercase), StringConstraints(pattern=r"^[a-z0-9._-]{3,32}$")
]
Password = Annotated[
    str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]
Email = Annotated[EmailStr, StringConstraints(max_length=254)]
BloodGroup = Literal["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"]
Sex = Literal["female", "male", "intersex", "unknown"]
_HTTP_URL = TypeAdapter(AnyHttpUrl)


def _http_url(value: str) -> str:
    _HTTP_URL.validate_python(value)
    return value


Avatar = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_url)]


#: Dates before this are typing mistakes, not medical history.
EARLIEST_DATE = date(1900, 1, 1)


def _plausible_date(value: date | None) -> date | None:
    # "Today" somewhere on Earth: UTC+14 reaches a date first.
    latest = (datetime.now(UTC) + timedelta(hours=14)).date()
    if value is not None and value > latest:
        raise ValueError("date must not be in the future")
    if value is not None and value < EARLIEST_DATE:
        raise ValueError("date must not be before 1900-01-01")
    return value


def _kept(value: Any, info: ValidationInfo) -> Any:
    """A field a PATCH may change but not set to ``null``."""
    if value is None:
        raise ValueError(f"{info.field_name} may be changed but not removed")
    return value


class UserCreate(RequestModel):
    username: Username
    email: Email
    password: Password
    role: Role = Role.PATIENT


class UserUpdate(RequestModel):
    email: Email | None = None
    password: Password | None = None
    role: Role | None = None

    _no_nulls = field_validator("email", "password", "role")(_kept)


class UserRead(ResponseModel):
    id: uuid.UUID
    username: str
    email: str
    role: Role
    registered_on: datetime


class UserPage(Page[UserRead]):
    pass


class UserListQuery(PageQuery):
    username: Username | None = None


class ProfileCreate(RequestModel):
    avatar: Avatar | None = None
    blood_group: BloodGroup | None = None
    date_of_birth: date | None = None
    sex: Sex | None = None

    _dob = field_validator("date_of_birth")(_plausible_date)


class ProfileUpdate(ProfileCreate):
    pass


class ProfileRead(ResponseModel):
    avatar: str | None
    blood_group: BloodGroup | None
    date_of_birth: date | None
    sex: Sex | None
    created_at: datetime
    updated_at: datetime


class DiseaseCreate(RequestModel):
    name: ShortText
    details: LongText | None = None
    diagnosed_on: date | None = None

    _diagnosed = field_validator("diagnosed_on")(_plausible_date)


class DiseaseUpdate(RequestModel):
    name: ShortText | None = None
    details: LongText | None = None
    diagnosed_on: date | None = None

    _diagnosed = field_validator("diagnosed_on")(_plausible_date)
    _name_kept = field_validator("name")(_kept)


class DiseaseRead(ResponseModel):
    id: uuid.UUID
    name: str
    details: str | None
    diagnosed_on: date | None
    created_at: datetime


class DiseasePage(Page[DiseaseRead]):
    pass
