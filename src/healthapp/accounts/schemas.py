"""Request and response models of the accounts domain."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    EmailStr,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)

from healthapp.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from healthapp.domain.roles import Role
from healthapp.pagination import PageQuery
from healthapp.schemas_common import LongText, Page, RequestModel, ResponseModel, ShortText

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9._-]{3,32}$")]
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


def _not_in_future(value: date | None) -> date | None:
    if value is not None and value > date.today():
        raise ValueError("date must not be in the future")
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

    @model_validator(mode="after")
    def _no_nulls(self) -> UserUpdate:
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may be changed but not removed")
        return self


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

    _dob = field_validator("date_of_birth")(_not_in_future)


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

    _diagnosed = field_validator("diagnosed_on")(_not_in_future)


class DiseaseUpdate(RequestModel):
    name: ShortText | None = None
    details: LongText | None = None
    diagnosed_on: date | None = None

    _diagnosed = field_validator("diagnosed_on")(_not_in_future)

    @model_validator(mode="after")
    def _name_kept(self) -> DiseaseUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name may be changed but not removed")
        return self


class DiseaseRead(ResponseModel):
    id: uuid.UUID
    name: str
    details: str | None
    diagnosed_on: date | None
    created_at: datetime


class DiseasePage(Page[DiseaseRead]):
    pass
