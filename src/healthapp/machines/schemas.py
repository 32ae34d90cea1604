"""Request and response models of the machines domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import StringConstraints, ValidationInfo, field_validator

from healthapp.pagination import PageQuery
from healthapp.schemas_common import LongText, Page, RequestModel, ResponseModel, ShortText

MachineType = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SerialNumber = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class MachineCreate(RequestModel):
    machine_type: MachineType
    serial_number: SerialNumber
    information: LongText | None = None
    manufacturer: ShortText | None = None
    active: bool = True


class MachineUpdate(RequestModel):
    machine_type: MachineType | None = None
    serial_number: SerialNumber | None = None
    information: LongText | None = None
    manufacturer: ShortText | None = None
    active: bool | None = None

    @field_validator("machine_type", "serial_number", "active")
    @classmethod
    def _required_kept(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise ValueError(f"{info.field_name} may be changed but not removed")
        return value


class MachineRead(ResponseModel):
    id: uuid.UUID
    machine_type: str
    information: str | None
    manufacturer: str | None
    serial_number: str
    active: bool
    created_at: datetime


class MachinePage(Page[MachineRead]):
    pass


class MachineListQuery(PageQuery):
    active: bool | None = None
    machine_type: MachineType | None = None
