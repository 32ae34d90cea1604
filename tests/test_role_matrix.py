"""The Core API's role matrix: every route, with no token and as each role.

The cases come from the route table of an app built at collection time (it never connects
to a server), so a route added to the Core API is in the matrix without touching this file,
and a route that declares no roles fails ``test_every_view_declares_its_roles``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from healthapp.domain.roles import Role
from tests import factories, role_matrix
from tests.factories import ApiClient, mint
from tests.routes import CORE_CASES as CASES
from tests.routes import OWNER_ARGUMENT

ROLES = [Role.PATIENT, Role.OPERATOR, Role.ADMIN]
PER_USER_CASES = [
    case
    for case in CASES
    if OWNER_ARGUMENT in case.arguments
    and not case.is_public
    and Role.PATIENT in (case.allowed_roles or ())
]


def _own_values(user: factories.TestUser) -> dict[str, Any]:
    return {OWNER_ARGUMENT: user.id}


def _tokens(user: factories.TestUser):  # type: ignore[no-untyped-def]
    return lambda kind: user.refresh_token if kind == "refresh" else user.access_token


def test_every_view_declares_its_roles(app: Any) -> None:
    assert role_matrix.undeclared_views(app) == []
    assert role_matrix.invalid_declarations(app) == []


def test_matrix_covers_the_served_route_table(app: Any) -> None:
    served = {(case.rule, case.method) for case in role_matrix.route_cases(app)}
    assert served == {(case.rule, case.method) for case in CASES}


def test_matrix_covers_the_core_routes() -> None:
    # A guard on the guard: if route discovery broke, the matrix would silently shrink.
    ids = set(role_matrix.case_ids(CASES))
    for expected in (
        "POST /api/v1/auth/token",
        "POST /api/v1/auth/refresh",
        "GET /api/v1/users/",
        "POST /api/v1/users/",
        "DELETE /api/v1/users/<uuid:user_id>",
        "PATCH /api/v1/users/<uuid:user_id>/profile",
        "GET /api/v1/users/<uuid:user_id>/diseases/<uuid:disease_id>",
        "POST /api/v1/machines/",
        "DELETE /api/v1/machines/<uuid:machine_id>",
        "GET /api/v1/audit/",
        "GET /healthz",
        "GET /readyz",
    ):
        assert expected in ids
    assert not any(case.rule.startswith(("/openapi", "/docs", "/static")) for case in CASES)


def test_route_declarations_match_the_spec() -> None:
    declared = {case.id: case.allowed_roles for case in CASES}
    staff = frozenset({Role.OPERATOR, Role.ADMIN})
    everyone = frozenset(Role)
    admin = frozenset({Role.ADMIN})
    assert declared["POST /api/v1/auth/token"] is None
    assert declared["POST /api/v1/users/"] is None
    assert declared["GET /api/v1/users/"] == staff
    assert declared["GET /api/v1/users/<uuid:user_id>"] == everyone
    assert declared["GET /api/v1/machines/"] == everyone
    assert declared["POST /api/v1/machines/"] == admin
    assert declared["PATCH /api/v1/machines/<uuid:machine_id>"] == admin
    assert declared["DELETE /api/v1/machines/<uuid:machine_id>"] == admin
    assert declared["GET /api/v1/audit/"] == admin
    refresh = next(case for case in CASES if case.id == "POST /api/v1/auth/refresh")
    assert refresh.token_type == "refresh"


@pytest.mark.parametrize("case", CASES, ids=role_matrix.case_ids(CASES))
def test_no_token(app: Any, api: ApiClient, case: role_matrix.RouteCase) -> None:
    role_matrix.check_no_token(app, api.client, case)


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
@pytest.mark.parametrize("case", CASES, ids=role_matrix.case_ids(CASES))
def test_role(app: Any, api: ApiClient, case: role_matrix.RouteCase, role: Role) -> None:
    caller = api.user(role)
    role_matrix.check_role(
        app,
        api.client,
        case,
        role=role,
        token=role_matrix.token_for(case, _tokens(caller)),
        own_values=_own_values(caller),
    )


@pytest.mark.parametrize("case", PER_USER_CASES, ids=role_matrix.case_ids(PER_USER_CASES))
def test_patient_naming_another_user_is_answered_as_for_nobody(
    app: Any, api: ApiClient, case: role_matrix.RouteCase
) -> None:
    patient, other = api.user(Role.PATIENT), api.user(Role.PATIENT)
    role_matrix.check_other_users_resource(
        app,
        api.client,
        case,
        token=role_matrix.token_for(case, _tokens(patient)),
        other_values=_own_values(other),
        stranger_values={OWNER_ARGUMENT: uuid.uuid4()},
    )


# The matrix itself: it must catch what it is there to catch ------------------------------


def _toy_api() -> Any:
    """A bare API with one route of each kind, to show the checks fail when they should."""
    from healthapp.auth.access import ADMIN_ONLY, public, requires
    from healthapp.auth.keys import verifying_keys
    from healthapp.config import load_settings
    from healthapp.webapp import new_api, register_token_checks

    settings = load_settings("testing")
    toy = new_api("toy", title="Toy", settings=settings)
    register_token_checks(toy, verifying_keys(settings), revocations=None)

    @toy.get("/undeclared")
    def undeclared() -> dict[str, str]:
        return {}

    @toy.get("/claims-admin-only")
    def claims_admin_only() -> dict[str, str]:  # declares roles it does not enforce
        return {}

    claims_admin_only.allowed_roles = ADMIN_ONLY  # type: ignore[attr-defined]

    @toy.get("/admin-only")
    @requires(ADMIN_ONLY)
    def admin_only() -> dict[str, str]:
        return {}

    @toy.get("/open")
    @public
    def open_route() -> dict[str, str]:
        return {}

    return toy


def _toy_token(toy: Any, role: Role) -> str:
    return mint(toy, uuid.uuid4(), "toy", role)


def test_matrix_finds_a_route_without_a_declaration() -> None:
    toy = _toy_api()
    assert role_matrix.undeclared_views(toy) == ["/undeclared -> undeclared"]


def test_matrix_catches_a_role_that_gets_through() -> None:
    toy = _toy_api()
    cases = {case.rule: case for case in role_matrix.route_cases(toy)}
    client = toy.test_client()
    with pytest.raises(AssertionError):
        role_matrix.check_no_token(toy, client, cases["/claims-admin-only"])
    with pytest.raises(AssertionError):
        role_matrix.check_role(
            toy,
            client,
            cases["/claims-admin-only"],
            role=Role.PATIENT,
            token=_toy_token(toy, Role.PATIENT),
            own_values={},
        )
    # The enforced route passes every check.
    role_matrix.check_no_token(toy, client, cases["/admin-only"])
    role_matrix.check_no_token(toy, client, cases["/open"])
    for role in Role:
        role_matrix.check_role(
            toy,
            client,
            cases["/admin-only"],
            role=role,
            token=_toy_token(toy, role),
            own_values={},
        )
