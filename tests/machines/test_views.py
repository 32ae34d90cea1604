"""Machines over HTTP (SPEC §5): everyone reads them, admins manage them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from healthapp.domain.roles import Role
from tests.assertions import assert_problem, error_locs
from tests.factories import ApiClient, checkup_item

MACHINES = "/api/v1/machines/"
MACHINE_FIELDS = {
    "id",
    "machine_type",
    "information",
    "manufacturer",
    "serial_number",
    "active",
    "created_at",
}
CUFF = {
    "machine_type": "blood_pressure",
    "serial_number": "BP-0001",
    "manufacturer": "Acme Medical",
    "information": "Upper-arm cuff, room 2",
}


def _create(api: ApiClient, admin: Any, **fields: Any) -> dict[str, Any]:
    response = api.post(MACHINES, as_=admin, json={**CUFF, **fields})
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_admin_registers_a_machine(api: ApiClient) -> None:
    machine = _create(api, api.user(Role.ADMIN))
    assert set(machine) == MACHINE_FIELDS
    assert {k: machine[k] for k in CUFF} == CUFF
    assert machine["active"] is True
    assert machine["created_at"].endswith("Z")


def test_machine_needs_only_type_and_serial(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    response = api.post(MACHINES, as_=admin, json={"machine_type": "ecg", "serial_number": "E1"})
    assert response.status_code == 201
    assert response.json["manufacturer"] is None
    assert response.json["information"] is None


@pytest.mark.parametrize("role", list(Role))
def test_every_role_reads_machines(api: ApiClient, role: Role) -> None:
    machine = _create(api, api.user(Role.ADMIN))
    caller = api.user(role)
    assert api.get(f"{MACHINES}{machine['id']}", as_=caller).json == machine
    assert [m["id"] for m in api.get(MACHINES, as_=caller).json["items"]] == [machine["id"]]


@pytest.mark.parametrize("role", [Role.PATIENT, Role.OPERATOR])
def test_only_admins_manage_machines(api: ApiClient, role: Role) -> None:
    machine = _create(api, api.user(Role.ADMIN))
    caller = api.user(role)
    path = f"{MACHINES}{machine['id']}"
    assert_problem(api.post(MACHINES, as_=caller, json={**CUFF, "serial_number": "X"}), 403)
    assert_problem(api.patch(path, as_=caller, json={"active": False}), 403)
    assert_problem(api.delete(path, as_=caller), 403)
    assert api.get(path, as_=caller).json == machine


def test_duplicate_serial_number_is_409(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    _create(api, admin)
    body = assert_problem(api.post(MACHINES, as_=admin, json=CUFF), 409)
    assert error_locs(body) == [["serial_number"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("machine_type", None),
        ("machine_type", ""),
        ("machine_type", "t" * 65),
        ("machine_type", 3),
        ("serial_number", ""),
        ("serial_number", "s" * 129),
        ("serial_number", ["BP-1"]),
        ("manufacturer", "m" * 201),
        ("manufacturer", ""),
        ("information", "i" * 5001),
        ("active", "yes"),
        ("active", 1),
        ("active", None),
        ("location", "room 2"),
    ],
)
def test_invalid_machine_is_422(api: ApiClient, field: str, value: Any) -> None:
    admin = api.user(Role.ADMIN)
    body = assert_problem(api.post(MACHINES, as_=admin, json={**CUFF, field: value}), 422)
    assert error_locs(body) == [[field]]
    assert api.get(MACHINES, as_=admin).json["items"] == []


def test_missing_required_fields_are_each_named(api: ApiClient) -> None:
    body = assert_problem(api.post(MACHINES, as_=api.user(Role.ADMIN), json={}), 422)
    assert sorted(error_locs(body)) == [["machine_type"], ["serial_number"]]


def test_admin_changes_and_retires_a_machine(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    machine = _create(api, admin)
    path = f"{MACHINES}{machine['id']}"
    changed = api.patch(path, as_=admin, json={"manufacturer": "Globex", "information": None})
    assert changed.status_code == 200
    assert changed.json["manufacturer"] == "Globex"
    assert changed.json["information"] is None
    assert changed.json["serial_number"] == CUFF["serial_number"]
    retired = api.patch(path, as_=admin, json={"active": False})
    assert retired.json["active"] is False
    assert api.get(path, as_=admin).json["active"] is False


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"machine_type": None}, ["machine_type"]),
        ({"serial_number": None}, ["serial_number"]),
        ({"active": None}, ["active"]),
        ({"active": "false"}, ["active"]),
        ({"id": str(uuid.uuid4())}, ["id"]),
    ],
)
def test_invalid_machine_patch_is_422(api: ApiClient, body: dict[str, Any], loc: list[str]) -> None:
    admin = api.user(Role.ADMIN)
    machine = _create(api, admin)
    path = f"{MACHINES}{machine['id']}"
    problem = assert_problem(api.patch(path, as_=admin, json=body), 422)
    assert error_locs(problem) == [loc]
    assert api.get(path, as_=admin).json == machine


def test_changing_to_a_taken_serial_number_is_409(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    _create(api, admin)
    other = _create(api, admin, serial_number="BP-0002")
    path = f"{MACHINES}{other['id']}"
    body = assert_problem(api.patch(path, as_=admin, json={"serial_number": "BP-0001"}), 409)
    assert error_locs(body) == [["serial_number"]]
    assert api.get(path, as_=admin).json["serial_number"] == "BP-0002"


def test_admin_deletes_an_unused_machine(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    machine = _create(api, admin)
    path = f"{MACHINES}{machine['id']}"
    assert api.delete(path, as_=admin).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)
    assert_problem(api.delete(path, as_=admin), 404)


def test_machine_with_checkups_cannot_be_deleted_but_can_be_retired(api: ApiClient) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    machine = _create(api, admin)
    upload = api.post(
        "/api/v1/checkups/",
        as_=admin,
        json={"checkups": [checkup_item(patient.id, uuid.UUID(machine["id"]))]},
    )
    assert upload.status_code == 201, upload.json
    path = f"{MACHINES}{machine['id']}"
    body = assert_problem(api.delete(path, as_=admin), 409)
    assert '"active": false' in body["detail"]
    assert api.get(path, as_=admin).status_code == 200
    assert api.patch(path, as_=admin, json={"active": False}).json["active"] is False


def test_unknown_machine_is_404(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    for response in (
        api.get(f"{MACHINES}{uuid.uuid4()}", as_=admin),
        api.patch(f"{MACHINES}{uuid.uuid4()}", as_=admin, json={"active": False}),
        api.delete(f"{MACHINES}{uuid.uuid4()}", as_=admin),
        api.get(f"{MACHINES}BP-0001", as_=admin),
    ):
        assert_problem(response, 404)


# Listing -------------------------------------------------------------------------------


def test_list_filters_by_active_and_type(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    cuff = _create(api, admin)
    ecg = _create(api, admin, machine_type="ecg", serial_number="ECG-1")
    retired = _create(api, admin, serial_number="BP-OLD", active=False)

    def ids(query: str) -> list[str]:
        response = api.get(MACHINES + query, as_=admin)
        assert response.status_code == 200, response.json
        return [m["id"] for m in response.json["items"]]

    assert ids("") == [cuff["id"], ecg["id"], retired["id"]]
    assert ids("?active=true") == [cuff["id"], ecg["id"]]
    assert ids("?active=false") == [retired["id"]]
    assert ids("?machine_type=ecg") == [ecg["id"]]
    assert ids("?machine_type=blood_pressure&active=true") == [cuff["id"]]
    assert ids("?machine_type=thermometer") == []


def test_list_pages_through_every_machine_once(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    created = [_create(api, admin, serial_number=f"SN-{n}")["id"] for n in range(5)]
    seen, cursor = [], None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = api.get(MACHINES + query, as_=admin).json
        assert len(page["items"]) <= 2
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?active=maybe", 422),
        ("?active=1&active=0", 422),
        ("?machine_type=" + "t" * 65, 422),
        ("?limit=0", 422),
        ("?limit=501", 422),
        ("?limit=" + "9" * 30, 422),
        ("?serial_number=BP-0001", 422),
        ("?machine_type=a%00b", 422),
        ("?cursor=WzEsMl0", 400),
        ("?cursor=%%%", 400),
    ],
)
def test_bad_list_queries_are_4xx(api: ApiClient, query: str, status: int) -> None:
    body = assert_problem(api.get(MACHINES + query, as_=api.user()), status)
    assert all(loc[0] == "query" for loc in error_locs(body))
