"""HTTP for machines (SPEC §5)."""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint

from healthapp.auth import policy
from healthapp.auth.access import requires
from healthapp.auth.privileged import privileged
from healthapp.database import db
from healthapp.machines import service
from healthapp.machines.models import Machine
from healthapp.machines.schemas import (
    MachineCreate,
    MachineListQuery,
    MachinePage,
    MachineRead,
    MachineUpdate,
)
from healthapp.problems import not_found
from healthapp.request_parsing import json_body, query_args

bp = APIBlueprint("machines", __name__, url_prefix="/api/v1/machines", tag="Machines")


def _machine_or_404(machine_id: uuid.UUID) -> Machine:
    machine = service.get(session=db.session, machine_id=machine_id)
    if machine is None:
        raise not_found("machine")
    return machine


@bp.get("/")
@bp.output(MachinePage)
@bp.doc(responses=[400, 401, 422])
@requires(policy.ALL_ROLES)
@query_args(MachineListQuery)
def list_machines(query: MachineListQuery) -> MachinePage:
    """List machines; filter by ``?active=`` and ``?machine_type=``."""
    machines, next_cursor = service.list_machines(session=db.session, query=query)
    return MachinePage(
        items=[MachineRead.model_validate(m) for m in machines], next_cursor=next_cursor
    )


@bp.post("/")
@bp.output(MachineRead, status_code=201)
@bp.doc(responses=[400, 401, 403, 409, 415, 422])
@requires(policy.CHANGE_MACHINES)
@privileged(policy.CHANGE_MACHINES)
@json_body(MachineCreate)
def create_machine(body: MachineCreate) -> MachineRead:
    """Register a machine (admin)."""
    return MachineRead.model_validate(service.create(session=db.session, machine_in=body))


@bp.get("/<uuid:machine_id>")
@bp.output(MachineRead)
@bp.doc(responses=[401, 404])
@requires(policy.ALL_ROLES)
def get_machine(machine_id: uuid.UUID) -> MachineRead:
    """Read a machine."""
    return MachineRead.model_validate(_machine_or_404(machine_id))


@bp.patch("/<uuid:machine_id>")
@bp.output(MachineRead)
@bp.doc(responses=[400, 401, 403, 404, 409, 415, 422])
@requires(policy.CHANGE_MACHINES)
@privileged(policy.CHANGE_MACHINES)
@json_body(MachineUpdate)
def update_machine(machine_id: uuid.UUID, body: MachineUpdate) -> MachineRead:
    """Change a machine (admin); ``{"active": false}`` retires it."""
    machine = service.update(
        session=db.session, machine=_machine_or_404(machine_id), machine_in=body
    )
    return MachineRead.model_validate(machine)


@bp.delete("/<uuid:machine_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[401, 403, 404, 409])
@requires(policy.CHANGE_MACHINES)
@privileged(policy.CHANGE_MACHINES)
def delete_machine(machine_id: uuid.UUID) -> tuple[str, int]:
    """Delete a machine no check-up references (admin)."""
    service.delete(session=db.session, machine=_machine_or_404(machine_id))
    return "", 204
