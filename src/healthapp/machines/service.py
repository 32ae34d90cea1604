"""What the machines domain does. Each function is one unit of work and commits once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from healthapp.accounts.models import User
from healthapp.checkups.models import Checkup
from healthapp.machines.models import Machine
from healthapp.machines.schemas import MachineCreate, MachineListQuery, MachineUpdate
from healthapp.outbox.service import record_changed_users
from healthapp.pagination_sql import paginate_by_time
from healthapp.unit_of_work import MACHINE_STILL_REFERENCED, unit_of_work

#: Fields shown in users' reports: changing one rebuilds the reports of the machine's users.
_REPORTED_FIELDS = frozenset({"machine_type", "manufacturer"})


def get(*, session: Session, machine_id: uuid.UUID) -> Machine | None:
    """The machine ``machine_id``, if any."""
    return session.get(Machine, machine_id)


def list_machines(
    *, session: Session, query: MachineListQuery
) -> tuple[Sequence[Machine], str | None]:
    """A page of machines in registration order."""
    stmt = select(Machine)
    if query.active is not None:
        stmt = stmt.where(Machine.active.is_(query.active))
    if query.machine_type is not None:
        stmt = stmt.where(Machine.machine_type == query.machine_type)
    return paginate_by_time(
        session=session,
        stmt=stmt,
        time_column=Machine.created_at,
        id_column=Machine.id,
        limit=query.limit,
        cursor=query.cursor,
    )


def users_of(*, machine_id: uuid.UUID) -> Select[uuid.UUID, str]:
    """The users (id, username) with a check-up taken on ``machine_id``, one row each."""
    return select(User.id, User.username).where(
        User.id.in_(select(Checkup.user_id).where(Checkup.machine_id == machine_id))
    )


def create(*, session: Session, machine_in: MachineCreate) -> Machine:
    """Register a machine; a serial number already registered is a conflict."""
    machine = Machine(id=uuid.uuid4(), **machine_in.model_dump())
    with unit_of_work(session):
        session.add(machine)
    session.refresh(machine)
    return machine


def update(*, session: Session, machine: Machine, machine_in: MachineUpdate) -> Machine:
    """Change a machine; the reports of users with check-ups on it are queued for rebuild."""
    changes = machine_in.model_dump(include=machine_in.model_fields_set)
    with unit_of_work(session):
        for name, value in changes.items():
            setattr(machine, name, value)
        if _REPORTED_FIELDS & changes.keys():
            record_changed_users(session=session, users=users_of(machine_id=machine.id))
    return machine


def delete(*, session: Session, machine: Machine) -> None:
    """Delete a machine no check-up references; otherwise a conflict (retire it instead)."""
    with unit_of_work(session, refusals=MACHINE_STILL_REFERENCED):
        session.delete(machine)
