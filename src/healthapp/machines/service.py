"""What the machines domain does. Each function is one unit of work and commits once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healthapp.checkups.models import Checkup
from healthapp.machines.models import Machine
from healthapp.machines.schemas import MachineCreate, MachineListQuery, MachineUpdate
from healthapp.outbox.service import enqueue_machine_users
from healthapp.pagination_sql import paginate_by_time
from healthapp.problems import Problem

_SERIAL_TAKEN = Problem(
    409,
    "A machine with that serial number is already registered.",
    errors=[{"loc": ["serial_number"], "msg": "serial number already registered"}],
)

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


def create(*, session: Session, machine_in: MachineCreate) -> Machine:
    """Register a machine; a serial number already registered is a 409."""
    machine = Machine(id=uuid.uuid4(), **machine_in.model_dump())
    session.add(machine)
    _commit(session)
    session.refresh(machine)
    return machine


def update(*, session: Session, machine: Machine, machine_in: MachineUpdate) -> Machine:
    """Change a machine; the reports of users with check-ups on it are queued for rebuild."""
    changes = machine_in.model_dump(include=machine_in.model_fields_set)
    for name, value in changes.items():
        setattr(machine, name, value)
    if _REPORTED_FIELDS & changes.keys():
        enqueue_machine_users(session=session, machine_id=machine.id)
    _commit(session)
    return machine


def delete(*, session: Session, machine: Machine) -> None:
    """Delete a machine no check-up references; otherwise 409 (retire it instead)."""
    referenced = session.scalar(select(exists().where(Checkup.machine_id == machine.id)))
    if referenced:
        raise Problem(
            409,
            'Check-ups reference this machine; retire it with {"active": false} instead.',
        )
    session.delete(machine)
    _commit(session)


def _commit(session: Session) -> None:
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if constraint == "uq_machines_serial_number":
            raise _SERIAL_TAKEN from None
        raise Problem(
            409, 'Check-ups reference this machine; retire it with {"active": false} instead.'
        ) from None
