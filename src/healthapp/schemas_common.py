"""Building blocks shared by every schema module."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

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


ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=5000)]


def _not_removed(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        raise ValueError(f"{info.field_name} may be changed but not removed")
    return value


def _not_null(schema: dict[str, Any]) -> None:
    """Document the field as it is accepted: left out or set, never ``null``."""
    options = schema.pop("anyOf", None)
    if options is not None:
        kept = [option for option in options if option != {"type": "null"}]
        schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
    schema.pop("default", None)


#: A field a PATCH may change but not set to ``null`` (left out, it stays as it is).
Kept = Annotated[T | None, AfterValidator(_not_removed), Field(json_schema_extra=_not_null)]


# Plausible dates -----------------------------------------------------------------------

#: Dates before this are typing mistakes, not medical history.
EARLIEST_DATE = date(1900, 1, 1)
#: "Today" somewhere on Earth: UTC+14 reaches a date first.
_EARLIEST_TIMEZONE = timedelta(hours=14)


def latest_date() -> date:
    """The latest date that is not in the future anywhere on Earth."""
    return (datetime.now(UTC) + _EARLIEST_TIMEZONE).date()


def year_pattern(last: int) -> str:
    """A regular expression matching the four-digit years 1900 to ``last`` (2000-2099)."""
    if not 2000 <= last <= 2099:
        raise ValueError(f"year_pattern covers 2000 to 2099, not {last}")
    tens, units = divmod(last - 2000, 10)
    parts = [r"19\d\d"]
    if tens:
        parts.append(rf"20[0-{tens - 1}]\d")
    parts.append(f"20{tens}[0-{units}]")
    return "(" + "|".join(parts) + ")"


_DAY = r"(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
_TIME = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
_OFFSET = r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"


def date_pattern(last_year: int) -> str:
    """The ``YYYY-MM-DD`` dates of the years 1900 to ``last_year``, as a regular expression.

    JSON Schema bounds no date; the pattern tells clients (and generated test data) the
    years the server accepts. The exact bounds are in the field's description.
    """
    return f"^{year_pattern(last_year)}-{_DAY}$"


def datetime_pattern(last_year: int) -> str:
    """RFC 3339 timestamps with an offset in the years 1900 to ``last_year``."""
    return f"^{year_pattern(last_year)}-{_DAY}T{_TIME}{_OFFSET}$"


def _plausible_date(value: date | None) -> date | None:
    if value is not None and value > latest_date():
        raise ValueError("date must not be in the future")
    if value is not None and value < EARLIEST_DATE:
        raise ValueError("date must not be before 1900-01-01")
    return value


#: A date of medical history: not before 1900, not in the future.
PlausibleDate = Annotated[
    date,
    AfterValidator(_plausible_date),
    Field(
        description="Not before 1900-01-01, not in the future.",
        json_schema_extra={"pattern": date_pattern(latest_date().year)},
    ),
]


# Time ranges ---------------------------------------------------------------------------


class TimeRange(BaseModel):
    """``?from=`` (inclusive) and ``?to=`` (exclusive), both with a timezone, ``from`` first."""

    model_config = ConfigDict(populate_by_name=True)

    from_: AwareDatetime | None = Field(
        None, alias="from", description="Inclusive; with a timezone; before ``to``."
    )
    to: AwareDatetime | None = Field(None, description="Exclusive; with a timezone.")

    @model_validator(mode="after")
    def _range_ordered(self) -> Self:
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("from must be before to")
        return self
