"""Users over HTTP (SPEC §5): registration, reading, changing and deleting accounts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, text

from healthapp.domain.roles import Role
from tests.assertions import assert_problem, error_locs
from tests.factories import PASSWORD, ApiClient, checkup_item

USERS = "/api/v1/users/"
USER_FIELDS = {"id", "username", "email", "role", "registered_on"}


def _register(api: ApiClient, username: str = "alice", **fields: Any) -> Any:
    as_ = fields.pop("as_", None)
    body = {"username": username, "email": f"{username}@example.com", "password": "0123456789"}
    return api.post(USERS, json={**body, **fields}, as_=as_)


def _login(api: ApiClient, username: str, password: str) -> Any:
    return api.post("/api/v1/auth/token", json={"username": username, "password": password})


# Registration --------------------------------------------------------------------------


def test_open_registration_creates_a_patient(api: ApiClient) -> None:
    response = _register(api)
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == USER_FIELDS
    assert body["username"] == "alice"
    assert body["email"] == "alice@example.com"
    assert body["role"] == "patient"
    assert body["registered_on"].endswith("Z")
    uuid.UUID(body["id"])


def test_password_is_stored_hashed_and_never_returned(api: ApiClient, engine: Engine) -> None:
    response = _register(api)
    assert "password" not in response.get_data(as_text=True)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users")).scalar_one()
    assert stored.startswith("$argon2id$")
    assert "0123456789" not in stored


def test_username_is_lowercased_and_logs_in_any_case(api: ApiClient) -> None:
    response = _register(api, "Alice.Smith")
    assert response.status_code == 201, response.json
    assert response.json["username"] == "alice.smith"
    assert _login(api, "ALICE.SMITH", "0123456789").status_code == 200


def test_username_taken_is_409_whatever_its_case(api: ApiClient) -> None:
    assert _register(api, "alice").status_code == 201
    response = _register(api, "ALICE", email="other@example.com")
    body = assert_problem(response, 409)
    assert error_locs(body) == [["username"]]


def test_email_taken_is_409_whatever_its_case(api: ApiClient) -> None:
    assert _register(api, "alice", email="Alice@Example.com").status_code == 201
    body = assert_problem(_register(api, "bob", email="alice@EXAMPLE.COM"), 409)
    assert error_locs(body) == [["email"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "a" * 33),
        ("username", "has space"),
        ("username", None),
        ("username", 7),
        ("email", "not-an-email"),
        ("email", "x" * 250 + "@example.com"),
        ("password", "short"),
        ("password", "p" * 257),
        ("password", ["0123456789"]),
        ("role", "root"),
    ],
)
def test_invalid_registration_is_422_naming_the_field(
    api: ApiClient, field: str, value: object
) -> None:
    valid = {"username": "alice", "email": "alice@example.com", "password": "0123456789"}
    body = assert_problem(api.post(USERS, json={**valid, field: value}), 422)
    assert error_locs(body) == [[field]]


def test_registration_lists_every_invalid_field(api: ApiClient) -> None:
    response = api.post(USERS, json={"username": "x", "email": "nope", "extra": 1})
    body = assert_problem(response, 422)
    assert sorted(map(tuple, error_locs(body))) == [
        ("email",),
        ("extra",),
        ("password",),
        ("username",),
    ]


@pytest.mark.parametrize("caller", [None, Role.PATIENT, Role.OPERATOR])
@pytest.mark.parametrize("role", ["operator", "admin"])
def test_only_an_admin_registers_other_roles(
    api: ApiClient, caller: Role | None, role: str
) -> None:
    as_ = api.user(caller) if caller else None
    assert_problem(_register(api, "newstaff", role=role, as_=as_), 403)
    assert _login(api, "newstaff", "0123456789").status_code == 401


@pytest.mark.parametrize("role", ["patient", "operator", "admin"])
def test_admin_registers_any_role(api: ApiClient, role: str) -> None:
    admin = api.user(Role.ADMIN)
    response = _register(api, "newstaff", role=role, as_=admin)
    assert response.status_code == 201, response.json
    assert response.json["role"] == role


def test_a_bad_token_does_not_block_patient_registration(api: ApiClient) -> None:
    response = api.post(
        USERS,
        json={"username": "carol", "email": "carol@example.com", "password": "0123456789"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert response.status_code == 201


def test_a_bad_token_cannot_register_staff(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    body = {"username": "dave", "email": "dave@example.com", "password": "0123456789"}
    for token in ("not-a-token", admin.refresh_token, admin.access_token + "x"):
        response = api.post(
            USERS, json={**body, "role": "admin"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(response, 401)


# Listing -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMIN])
def test_staff_list_every_user(api: ApiClient, role: Role) -> None:
    caller = api.user(role)
    patients = {api.user(Role.PATIENT).id for _ in range(3)}
    response = api.get(USERS, as_=caller)
    assert response.status_code == 200
    ids = {uuid.UUID(item["id"]) for item in response.json["items"]}
    assert ids == patients | {caller.id}
    assert response.json["next_cursor"] is None
    assert all(set(item) == USER_FIELDS for item in response.json["items"])


def test_patient_cannot_list_users(api: ApiClient) -> None:
    assert_problem(api.get(USERS, as_=api.user()), 403)


def test_list_filters_by_username_in_any_case(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    target = api.user(username="findme")
    api.user()
    response = api.get(f"{USERS}?username=FindMe", as_=admin)
    assert [item["id"] for item in response.json["items"]] == [str(target.id)]
    assert api.get(f"{USERS}?username=nobody", as_=admin).json["items"] == []


def test_list_pages_through_every_user_once(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    expected = {admin.id} | {api.user().id for _ in range(6)}
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        page = api.get(USERS + query, as_=admin).json
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert {uuid.UUID(i) for i in seen} == expected


@pytest.mark.parametrize(
    "query",
    ["?limit=0", "?limit=501", "?limit=many", "?username=a b", "?page=2", "?limit=1&limit=2"],
)
def test_bad_list_queries_are_422(api: ApiClient, query: str) -> None:
    body = assert_problem(api.get(USERS + query, as_=api.user(Role.ADMIN)), 422)
    assert all(loc[0] == "query" for loc in error_locs(body))


def test_tampered_cursor_is_400(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    body = assert_problem(api.get(USERS + "?cursor=bm90LWEtY3Vyc29y", as_=admin), 400)
    assert error_locs(body) == [["query", "cursor"]]


# Reading -------------------------------------------------------------------------------


def test_patient_reads_themself(api: ApiClient) -> None:
    patient = api.user()
    response = api.get(f"{USERS}{patient.id}", as_=patient)
    assert response.status_code == 200
    assert response.json["username"] == patient.username


def test_patient_gets_404_for_another_user_exactly_as_for_nobody(api: ApiClient) -> None:
    patient, other = api.user(), api.user()
    for_other = api.get(f"{USERS}{other.id}", as_=patient)
    for_nobody = api.get(f"{USERS}{uuid.uuid4()}", as_=patient)
    assert_problem(for_other, 404)
    assert for_other.json == for_nobody.json
    staff = api.user(Role.OPERATOR)
    assert api.get(f"{USERS}{other.id}", as_=staff).status_code == 200


def test_malformed_user_id_is_404(api: ApiClient) -> None:
    assert_problem(api.get(f"{USERS}not-a-uuid", as_=api.user(Role.ADMIN)), 404)


# Changing ------------------------------------------------------------------------------


def test_patient_changes_own_email_and_password(api: ApiClient) -> None:
    patient = api.user()
    response = api.patch(
        f"{USERS}{patient.id}",
        as_=patient,
        json={
            "email": "new@example.com",
            "password": "a-new-password",
            "current_password": PASSWORD,
        },
    )
    assert response.status_code == 200, response.json
    assert response.json["email"] == "new@example.com"
    assert _login(api, patient.username, "a-new-password").status_code == 200
    assert _login(api, patient.username, PASSWORD).status_code == 401


def test_empty_patch_changes_nothing(api: ApiClient) -> None:
    patient = api.user()
    before = api.get(f"{USERS}{patient.id}", as_=patient).json
    assert api.patch(f"{USERS}{patient.id}", as_=patient, json={}).json == before


@pytest.mark.parametrize("role", [Role.PATIENT, Role.OPERATOR])
def test_only_an_admin_changes_a_role(api: ApiClient, role: Role) -> None:
    caller = api.user(role)
    response = api.patch(f"{USERS}{caller.id}", as_=caller, json={"role": "admin"})
    assert_problem(response, 403)
    assert api.get(f"{USERS}{caller.id}", as_=caller).json["role"] == role.value


def test_admin_changes_a_role_and_the_next_sign_in_carries_it(api: ApiClient) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    response = api.patch(f"{USERS}{patient.id}", as_=admin, json={"role": "operator"})
    assert response.status_code == 200
    assert response.json["role"] == "operator"
    # The tokens given for the old role are revoked, the refresh token too.
    assert_problem(api.get(USERS, as_=patient), 401)
    refreshed = api.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {patient.refresh_token}"}
    )
    assert_problem(refreshed, 401)
    login = api.post(
        "/api/v1/auth/token", json={"username": patient.username, "password": PASSWORD}
    )
    token = login.json["access_token"]
    listing = api.get(USERS, headers={"Authorization": f"Bearer {token}"})
    assert listing.status_code == 200


def test_operator_cannot_change_another_user(api: ApiClient) -> None:
    operator, patient = api.user(Role.OPERATOR), api.user()
    response = api.patch(f"{USERS}{patient.id}", as_=operator, json={"email": "x@example.com"})
    assert_problem(response, 403)


def test_patient_cannot_change_another_user(api: ApiClient) -> None:
    patient, other = api.user(), api.user()
    response = api.patch(f"{USERS}{other.id}", as_=patient, json={"email": "x@example.com"})
    assert_problem(response, 404)


def test_admin_changes_another_users_email(api: ApiClient) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    response = api.patch(f"{USERS}{patient.id}", as_=admin, json={"email": "fixed@example.com"})
    assert response.json["email"] == "fixed@example.com"


def test_changing_to_a_taken_email_is_409(api: ApiClient) -> None:
    patient, other = api.user(), api.user()
    taken = f"{other.username.upper()}@EXAMPLE.COM"
    body = assert_problem(
        api.patch(f"{USERS}{patient.id}", as_=patient, json={"email": taken}), 409
    )
    assert error_locs(body) == [["email"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": None}, ["email"]),
        ({"password": None}, ["password"]),
        ({"password": "short"}, ["password"]),
        ({"email": "nope"}, ["email"]),
        ({"username": "renamed"}, ["username"]),
        ({"id": str(uuid.uuid4())}, ["id"]),
    ],
)
def test_invalid_user_patch_is_422(api: ApiClient, body: dict[str, Any], loc: list[str]) -> None:
    patient = api.user()
    problem = assert_problem(api.patch(f"{USERS}{patient.id}", as_=patient, json=body), 422)
    assert error_locs(problem) == [loc]


# Deleting ------------------------------------------------------------------------------


def _counts(engine: Engine, user_id: uuid.UUID) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :id"),  # noqa: S608
                {"id": user_id},
            ).scalar_one()
            for table, column in (
                ("users", "id"),
                ("profiles", "user_id"),
                ("diseases", "user_id"),
                ("checkups", "user_id"),
            )
        }


def test_deleting_a_user_removes_profile_diseases_and_checkups(
    api: ApiClient, engine: Engine
) -> None:
    patient, operator = api.user(), api.user(Role.OPERATOR)
    base = f"{USERS}{patient.id}"
    assert api.post(f"{base}/profile", as_=patient, json={"sex": "female"}).status_code == 201
    for name in ("asthma", "migraine"):
        assert api.post(f"{base}/diseases", as_=patient, json={"name": name}).status_code == 201
    machine = api.machine()
    upload = api.post(
        "/api/v1/checkups/",
        as_=operator,
        json={"checkups": [checkup_item(patient.id, machine) for _ in range(2)]},
    )
    assert upload.status_code == 201, upload.json
    assert _counts(engine, patient.id) == {"users": 1, "profiles": 1, "diseases": 2, "checkups": 2}

    assert api.delete(base, as_=patient).status_code == 204

    assert _counts(engine, patient.id) == {"users": 0, "profiles": 0, "diseases": 0, "checkups": 0}
    assert_problem(api.get(base, as_=api.user(Role.ADMIN)), 404)
    assert _login(api, patient.username, PASSWORD).status_code == 401
    with engine.connect() as conn:
        queued = conn.execute(
            text("SELECT count(*) FROM report_outbox WHERE user_id = :id"), {"id": patient.id}
        ).scalar_one()
    assert queued >= 1  # the report is removed at the next sync


def test_deleting_an_uploader_keeps_the_checkups_they_uploaded(
    api: ApiClient, engine: Engine
) -> None:
    patient, operator, admin = api.user(), api.user(Role.OPERATOR), api.user(Role.ADMIN)
    item = checkup_item(patient.id, api.machine())
    assert api.post("/api/v1/checkups/", as_=operator, json={"checkups": [item]}).status_code == 201
    assert api.delete(f"{USERS}{operator.id}", as_=admin).status_code == 204
    with engine.connect() as conn:
        uploaded_by = conn.execute(
            text("SELECT uploaded_by FROM checkups WHERE id = :id"), {"id": item["id"]}
        ).scalar_one()
    assert uploaded_by is None


def test_admin_deletes_any_user(api: ApiClient) -> None:
    admin, patient = api.user(Role.ADMIN), api.user()
    assert api.delete(f"{USERS}{patient.id}", as_=admin).status_code == 204
    assert_problem(api.delete(f"{USERS}{patient.id}", as_=admin), 404)


def test_operator_cannot_delete_another_user(api: ApiClient) -> None:
    operator, patient = api.user(Role.OPERATOR), api.user()
    assert_problem(api.delete(f"{USERS}{patient.id}", as_=operator), 403)
    assert api.get(f"{USERS}{patient.id}", as_=operator).status_code == 200


def test_patient_cannot_delete_another_user(api: ApiClient) -> None:
    patient, other = api.user(), api.user()
    assert_problem(api.delete(f"{USERS}{other.id}", as_=patient), 404)
    assert api.get(f"{USERS}{other.id}", as_=other).status_code == 200


def test_a_deleted_users_token_reaches_nothing_of_theirs(api: ApiClient) -> None:
    patient = api.user()
    assert api.delete(f"{USERS}{patient.id}", as_=patient).status_code == 204
    assert_problem(api.get(f"{USERS}{patient.id}", as_=patient), 401)  # revoked
    assert_problem(api.get(f"{USERS}{patient.id}/diseases", as_=patient), 401)
