"""The machines service: serial numbers unique, referenced machines kept, reports queued."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from healthapp.accounts import service as accounts
from healthapp.accounts.models import User
from healthapp.accounts.schemas import UserCreate
from healthapp.checkups.models import Checkup
from healthapp.errors import Conflict, DomainError
from healthapp.machines import service
from healthapp.machines.models import Machine
from healthapp.machines.schemas import MachineCreate, MachineListQuery, MachineUpdate
from healthapp.outbox.models import ReportOutbox
from healthapp.problems import from_domain_error


def _machine(session: Any, serial: str = "BP-1", **fields: Any) -> Machine:
    return service.create(
        session=session,
        machine_in=MachineCreate(machine_type="blood_pressure", serial_number=serial, **fields),
    )


def _user(session: Any, username: str) -> User:
    return accounts.create(
        session=session,
        user_in=UserCreate(
            username=username, email=f"{username}@example.com", password="0123456789"
        ),
    )


def _checkup(session: Any, user: User, machine: Machine) -> None:
    session.add(
        Checkup(
            id=uuid.uuid4(),
            user_id=user.id,
            machine_id=machine.id,
            checkup_type="heart_rate",
            information={"bpm": 70},
            taken_at=datetime(2026, 1, 15, 9, 30, tzinfo=UTC),
        )
    )
    session.commit()


def _queued_users(session: Any) -> list[uuid.UUID]:
    return list(session.scalars(select(ReportOutbox.user_id).order_by(ReportOutbox.id)))


def test_create_get_and_list(db_session: Any) -> None:
    machine = _machine(db_session)
    assert service.get(session=db_session, machine_id=machine.id) is machine
    assert service.get(session=db_session, machine_id=uuid.uuid4()) is None
    rows, cursor = service.list_machines(session=db_session, query=MachineListQuery())
    assert [m.id for m in rows] == [machine.id]
    assert cursor is None


def test_duplicate_serial_is_a_409_and_the_session_recovers(db_session: Any) -> None:
    _machine(db_session)
    with pytest.raises(DomainError) as caught:
        _machine(db_session)
    assert from_domain_error(caught.value).status == 409
    assert caught.value.errors[0]["loc"] == ["serial_number"]
    _machine(db_session, "BP-2")
    assert db_session.scalar(select(func.count()).select_from(Machine)) == 2


def test_delete_of_a_referenced_machine_is_a_409(db_session: Any) -> None:
    machine, user = _machine(db_session), _user(db_session, "alice")
    _checkup(db_session, user, machine)
    with pytest.raises(DomainError) as caught:
        service.delete(session=db_session, machine=machine)
    assert from_domain_error(caught.value).status == 409
    assert service.get(session=db_session, machine_id=machine.id) is not None


def test_changing_what_reports_show_queues_the_machines_users(db_session: Any) -> None:
    machine, other_machine = _machine(db_session), _machine(db_session, "BP-2")
    alice, bob, carol = (_user(db_session, n) for n in ("alice", "bob", "carol"))
    _checkup(db_session, alice, machine)
    _checkup(db_session, alice, machine)
    _checkup(db_session, bob, machine)
    _checkup(db_session, carol, other_machine)
    before = len(_queued_users(db_session))

    service.update(
        session=db_session, machine=machine, machine_in=MachineUpdate(manufacturer="Globex")
    )

    queued = _queued_users(db_session)[before:]
    assert sorted(queued) == sorted([alice.id, bob.id])  # one row per user, not per check-up


def test_changes_no_report_shows_queue_nothing(db_session: Any) -> None:
    machine, alice = _machine(db_session), _user(db_session, "alice")
    _checkup(db_session, alice, machine)
    before = len(_queued_users(db_session))
    service.update(
        session=db_session,
        machine=machine,
        machine_in=MachineUpdate(active=False, information="moved to room 3"),
    )
    assert len(_queued_users(db_session)) == before
    assert machine.active is False


def test_each_broken_constraint_answers_its_own_refusal(db_session: Any) -> None:
    machine, user = _machine(db_session), _user(db_session, "alice")
    _checkup(db_session, user, machine)
    with pytest.raises(Conflict) as taken:
        _machine(db_session)
    with pytest.raises(Conflict) as referenced:
        service.delete(session=db_session, machine=machine)
    assert taken.value.detail == "A machine with that serial number is already registered."
    assert referenced.value.detail == (
        'Check-ups reference this machine; retire it with {"active": false} instead.'
    )
    assert referenced.value.errors == []
