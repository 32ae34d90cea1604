"""Building blocks shared by every schema module."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

T = TypeVar("T")


class RequestModel(BaseModel):
    """A request body: unknown fields and type coercion are rejected.

    Strict, so ``"yes"`` or ``1`` is not a boolean and a number is not a date; JSON's own
    string forms of dates, UUIDs and enum values are still accepted.
    """

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class ResponseModel(BaseModel):
    """A response body, built from ORM rows or dicts."""

    model_config = ConfigDict(from_attributes=True)


class Page(ResponseModel, Generic[T]):
    """One page of a list (SPEC §3)."""

    items: list[T]
    next_cursor: str | None


def _require_timezone(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone (e.g. a trailing Z)")
    return value


#: A timestamp with an explicit offset; naive timestamps are ambiguous health data.
AwareDatetime = Annotated[datetime, AfterValidator(_require_timezone)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=5000)]
