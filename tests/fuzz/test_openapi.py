"""Schemathesis against both APIs' OpenAPI documents, in process, as every role.

Each operation is called with generated requests (valid ones and ones breaking the
schema) as an anonymous caller, a patient, an operator and an admin. Every answer must be
a documented status (never a 5xx) with the documented content type and a body matching
the documented schema. The database is emptied between operations and roles; examples
are derandomised, so a run is repeatable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app as create_core_app
from healthapp.domain.roles import Role
from healthapp.reports.app import create_app as create_reports_app
from tests import factories
from tests.conftest import truncate_all
from tests.factories import ApiClient, checkup_item

#: Examples per operation and role: the whole fuzz suite stays well under 90 s.
MAX_EXAMPLES = 4
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES = ["anonymous", *(role.value for role in Role)]


def _openapi_document(factory: Any, **settings_values: Any) -> dict[str, Any]:
    """An API's OpenAPI document; building the app opens no connection."""
    app_settings = config.Testing()
    for name, value in settings_values.items():
        setattr(app_settings, name, value)
    document: dict[str, Any] = factory(app_settings).test_client().get("/openapi.json").json
    return document


def _load(document: dict[str, Any]) -> Any:
    schema = schemathesis.openapi.from_dict(document)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
    )
    return schema


core_schema = _load(
    _openapi_document(create_core_app, DATABASE_URL="postgresql://unused@127.0.0.1/unused")
)
reports_schema = _load(_openapi_document(create_reports_app, REDIS_URL="redis://127.0.0.1:1/0"))

fuzz_settings = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True)
class World:
    """What the generated requests may point at: one of each resource, and who calls."""

    caller: factories.TestUser | None
    patient: factories.TestUser
    ids: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return self.caller.headers if self.caller else {}

    def aim(self, case: Any) -> None:
        """Point valid path parameters at existing resources so the fuzzing gets past 404."""
        for name, value in (case.path_parameters or {}).items():
            if name in self.ids and _is_uuid(value):
                case.path_parameters[name] = self.ids[name]
            elif name == "username" and isinstance(value, str) and value.isascii():
                case.path_parameters[name] = self.patient.username


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@pytest.fixture
def world(api: ApiClient, engine: Engine, role: str) -> Iterator[World]:
    """A patient with a profile, a disease and a check-up, a machine, and the caller."""
    patient = api.user(Role.PATIENT)
    callers = {"anonymous": None, "patient": patient}
    caller = callers[role] if role in callers else api.user(Role(role))
    machine = api.machine()
    disease = api.post(
        f"/api/v1/users/{patient.id}/diseases", as_=patient, json={"name": "Hypertension"}
    ).json["id"]
    api.post(f"/api/v1/users/{patient.id}/profile", as_=patient, json={"blood_group": "O+"})
    item = checkup_item(patient.id, machine)
    item["information"]["notes"] = "resting"
    assert api.post("/api/v1/checkups/", as_=patient, json={"checkups": [item]}).status_code == 201
    ids = {
        "user_id": str((caller or patient).id),
        "machine_id": str(machine),
        "disease_id": disease,
        "checkup_id": item["id"],
    }
    yield World(caller=caller, patient=patient, ids=ids)
    truncate_all(engine)


@pytest.mark.parametrize("role", ROLES)
@core_schema.parametrize()
@fuzz_settings
def test_core_api_conforms_to_its_openapi_document(case: Any, app: Any, world: World) -> None:
    world.aim(case)
    case.call_and_validate(app=app, headers=world.headers, checks=CHECKS)


@pytest.mark.parametrize("role", ROLES)
@reports_schema.parametrize()
@fuzz_settings
def test_reports_api_conforms_to_its_openapi_document(
    case: Any, reports_app: Any, world: World, sync: Any, redis_client: redis.Redis
) -> None:
    if not redis_client.exists("healthapp:fuzz-synced"):
        sync()
        redis_client.set("healthapp:fuzz-synced", 1)
    world.aim(case)
    # The in-process transport hands over the body undecoded: ask for it uncompressed (the
    # gzipped first page is checked against the plain one in tests/reports).
    headers = {**world.headers, "Accept-Encoding": "identity"}
    case.call_and_validate(app=reports_app, headers=headers, checks=CHECKS)
