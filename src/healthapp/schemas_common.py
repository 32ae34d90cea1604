"""Building blocks shared by every schema module."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

T = TypeVar("T")

#: The error message for a string holding U+0000, which PostgreSQL stores in no text or
#: JSONB column.
NUL_MESSAGE = "must not contain the NUL character"


def nul_locations(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The location of every string (or object key) in parsed JSON ``value`` holding U+0000."""
    if isinstance(value, str):
        if "\x00" in value:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from nul_locations(key, (*loc, key))
            yield from nul_locations(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_locations(item, (*loc, index))


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
