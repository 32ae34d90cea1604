"""Request and response models of the accounts domain."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    EmailStr,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
)

from healthapp.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from healthapp.domain.profiles import BloodGroup, Sex
from healthapp.domain.roles import Role
from healthapp.pagination import PageQuery
from healthapp.schemas_common import (
    Kept,
    LongText,
    Page,
    PlausibleDate,
    RequestModel,
    ResponseModel,
    ShortText,
)


def _lowercase(value: str) -> str:
    return value.lower()


#: Usernames are case-insensitive: ``Alice`` registers (and logs in) as ``alice``.
Username = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{3,32}$"), AfterValidator(_lowercase)
]
Password = Annotated[
    str,
    StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH),
    Field(description=f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."),
]
CurrentPassword = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH),
    Field(
        description="Your password as it is now: required to change your own `password`, "
        "ignored otherwise (an admin sets another user's password without it)."
    ),
]
Email = Annotated[EmailStr, StringConstraints(max_length=254)]
_HTTP_URL = TypeAdapter(AnyHttpUrl)


def _http_url(value: str) -> str:
    _HTTP_URL.validate_python(value)
    return value


#: What an avatar URL looks like; ``AnyHttpUrl`` decides.
_HTTP_URL_PATTERN = r"^https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[!-~]*)?$"
Avatar = Annotated[
    str,
    StringConstraints(max_length=2048),
    AfterValidator(_http_url),
    Field(
        description="An http or https URL.",
        json_schema_extra={"format": "uri", "pattern": _HTTP_URL_PATTERN},
    ),
]
# Strict mode would take only the enum's members from Python code; JSON's strings stay exact.
BloodGroupValue = Annotated[BloodGroup, Strict(False)]
SexValue = Annotated[Sex, Strict(False)]


class UserCreate(RequestModel):
    username: Username
    email: Email
    password: Password
    role: Role = Role.PATIENT


class UserUpdate(RequestModel):
    email: Kept[Email] = None
    password: Kept[Password] = None
    current_password: Kept[CurrentPassword] = None
    role: Kept[Role] = None


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
    blood_group: BloodGroupValue | None = None
    date_of_birth: PlausibleDate | None = None
    sex: SexValue | None = None


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
    diagnosed_on: PlausibleDate | None = None


class DiseaseUpdate(RequestModel):
    name: Kept[ShortText] = None
    details: LongText | None = None
    diagnosed_on: PlausibleDate | None = None


class DiseaseRead(ResponseModel):
    id: uuid.UUID
    name: str
    details: str | None
    diagnosed_on: date | None
    created_at: datetime


class DiseasePage(Page[DiseaseRead]):
    pass
