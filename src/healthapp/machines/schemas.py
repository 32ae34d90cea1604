"""Request and response models of the machines domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints

from healthapp.pagination import PageQuery
from healthapp.schemas_common import Kept, LongText, Page, RequestModel, ResponseModel, ShortText

MachineType = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SerialNumber = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class MachineCreate(RequestModel):
    machine_type: MachineType
    serial_number: SerialNumber
    information: LongText | None = None
    manufacturer: ShortText | None = None
    active: bool = True


class MachineUpdate(RequestModel):
    machine_type: Kept[MachineType] = None
    serial_number: Kept[SerialNumber] = None
    information: LongText | None = None
    manufacturer: ShortText | None = None
    active: Kept[bool] = None


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
