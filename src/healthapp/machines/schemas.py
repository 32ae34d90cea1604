"""Request and response models of the machines domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints, model_validator

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

    @model_validator(mode="after")
    def _required_kept(self) -> MachineUpdate:
        for name in ("machine_type", "serial_number", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} may be changed but not removed")
        return self


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
