"""What a profile may say: the blood groups and sexes (SPEC §5), each listed once."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema


class NamedMembers(StrEnum):
    """A string enum whose JSON schema names its members (``x-enum-varnames``).

    Client generators name enum members after their values; ``A+`` and ``A-`` would
    both become ``A``, so the schema carries the names of this class instead.
    """

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        """The enum's schema with its member names."""
        json_schema = handler(schema)
        handler.resolve_ref_schema(json_schema)["x-enum-varnames"] = [m.name for m in cls]
        return json_schema


class BloodGroup(NamedMembers):
    """An ABO blood group with its Rh factor."""

    A_POSITIVE = "A+"
    A_NEGATIVE = "A-"
    B_POSITIVE = "B+"
    B_NEGATIVE = "B-"
    AB_POSITIVE = "AB+"
    AB_NEGATIVE = "AB-"
    O_POSITIVE = "O+"
    O_NEGATIVE = "O-"


class Sex(NamedMembers):
    """The sex recorded in a profile."""

    FEMALE = "female"
    MALE = "male"
    INTERSEX = "intersex"
    UNKNOWN = "unknown"


BLOOD_GROUPS: tuple[str, ...] = tuple(group.value for group in BloodGroup)
SEXES: tuple[str, ...] = tuple(sex.value for sex in Sex)
