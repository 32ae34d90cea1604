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
from tests.assertions import assert_problem
from tests.factories import ApiClient, mint
from tests.routes import CORE_CASES as CASES
from tests.routes import OWNER_ARGUMENT

ROLES = [Role.PATIENT, Role.OPERATOR, Role.ADMIN]
#: Changes whose caller the token alone identifies well enough: logging in, refreshing one's
#: own session, uploading check-ups (the hot write path; a patient's own only). Every other
#: change must confirm the caller's stored role (``@privileged``), on every request or when
#: it is privileged: a route added later fails the check below until it is one or the other.
ORDINARY_CHANGES = frozenset(
    {
        "POST /api/v1/auth/token",
        "POST /api/v1/auth/refresh",
        "POST /api/v1/auth/logout",  # one's own session
        "POST /api/v1/auth/mfa/totp",  # one's own authenticator, proven by the password
        "POST /api/v1/auth/mfa/totp/confirm",
        "POST /api/v1/checkups/",
    }
)
PRIVILEGED_ALWAYS = [c for c in CASES if c.privileged_roles and not c.privileged_sometimes]
#: Changes of one user's account or data: privileged when the user is someone else.
PRIVILEGED_FOR_OTHERS = [
    c for c in CASES if c.privileged_sometimes and OWNER_ARGUMENT in c.arguments
]
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


def test_every_privileged_route_confirms_the_stored_role() -> None:
    assert role_matrix.unconfirmed_privileged_routes(CASES, ordinary_changes=ORDINARY_CHANGES) == []


def test_the_privileged_routes_are_the_ones_the_spec_names() -> None:
    # A guard on the guard: the rule above found what it should, and named nothing away.
    always = {case.id for case in PRIVILEGED_ALWAYS}
    assert {
        "POST /api/v1/machines/",
        "PATCH /api/v1/machines/<uuid:machine_id>",
        "DELETE /api/v1/machines/<uuid:machine_id>",
        "DELETE /api/v1/checkups/<uuid:checkup_id>",
        "GET /api/v1/audit/",
    } <= always
    sometimes = {case.id for case in CASES if case.privileged_sometimes}
    assert {
        "POST /api/v1/users/",
        "PATCH /api/v1/users/<uuid:user_id>",
        "DELETE /api/v1/users/<uuid:user_id>",
        "PATCH /api/v1/users/<uuid:user_id>/profile",
        "POST /api/v1/users/<uuid:user_id>/diseases",
    } <= sometimes
    assert {case.id for case in CASES} >= ORDINARY_CHANGES
    # Reads other than the audit trail cost no query.
    assert not any(
        case.privileged_roles for case in CASES if case.method == "GET" and case.id not in always
    )


@pytest.mark.parametrize("case", PRIVILEGED_ALWAYS, ids=role_matrix.case_ids(PRIVILEGED_ALWAYS))
def test_a_demoted_admins_token_is_refused_on_every_privileged_route(
    app: Any, api: ApiClient, case: role_matrix.RouteCase
) -> None:
    admin = api.user(Role.ADMIN)
    api.set_stored_role(admin, Role.OPERATOR)
    response = role_matrix.call(
        api.client, case, role_matrix.build_path(app, case), admin.access_token
    )
    assert_problem(response, 403, role_matrix._describe(case, "demoted admin", response))


@pytest.mark.parametrize("case", PRIVILEGED_ALWAYS, ids=role_matrix.case_ids(PRIVILEGED_ALWAYS))
def test_a_deleted_admins_token_is_a_401_on_every_privileged_route(
    app: Any, api: ApiClient, case: role_matrix.RouteCase
) -> None:
    admin = api.user(Role.ADMIN)
    api.delete_stored_user(admin)
    response = role_matrix.call(
        api.client, case, role_matrix.build_path(app, case), admin.access_token
    )
    assert_problem(response, 401, role_matrix._describe(case, "deleted admin", response))
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "case", PRIVILEGED_FOR_OTHERS, ids=role_matrix.case_ids(PRIVILEGED_FOR_OTHERS)
)
def test_a_stale_admin_token_cannot_change_another_user(
    app: Any, api: ApiClient, case: role_matrix.RouteCase
) -> None:
    other = api.user(Role.PATIENT)
    demoted, deleted, admin = api.user(Role.ADMIN), api.user(Role.ADMIN), api.user(Role.ADMIN)
    api.set_stored_role(demoted, Role.PATIENT)
    api.delete_stored_user(deleted)
    path = role_matrix.build_path(app, case, _own_values(other))
    for caller, status in ((demoted, 403), (deleted, 401)):
        response = role_matrix.call(api.client, case, path, caller.access_token)
        assert_problem(response, status, role_matrix._describe(case, "stale admin", response))
    # An admin's token that the database bears out gets past the check (to the view).
    response = role_matrix.call(api.client, case, path, admin.access_token)
    assert response.status_code not in (401, 403), role_matrix._describe(case, "admin", response)


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


def test_matrix_finds_a_privileged_route_that_takes_the_tokens_word() -> None:
    from healthapp.auth.access import ADMIN_ONLY, ALL_ROLES, requires
    from healthapp.auth.privileged import privileged

    toy = _toy_api()

    @toy.post("/admin-change")
    @requires(ADMIN_ONLY)
    def admin_change() -> dict[str, str]:
        return {}

    @toy.post("/confirmed-change")
    @requires(ADMIN_ONLY)
    @privileged(ADMIN_ONLY)
    def confirmed_change() -> dict[str, str]:
        return {}

    @toy.post("/sometimes-confirmed")
    @requires(ADMIN_ONLY)
    @privileged(ADMIN_ONLY, when=lambda: True)
    def sometimes_confirmed() -> dict[str, str]:
        return {}

    @toy.delete("/own-change")
    @requires(ALL_ROLES)
    def own_change() -> dict[str, str]:
        return {}

    cases = role_matrix.route_cases(toy)
    assert role_matrix.unconfirmed_privileged_routes(cases, ordinary_changes=()) == [
        "DELETE /own-change: no @privileged",
        "GET /admin-only: no @privileged",
        "GET /claims-admin-only: no @privileged",
        "POST /admin-change: no @privileged",
        "POST /sometimes-confirmed: privileged on every request, not only when ...",
    ]
    ordinary = {
        "DELETE /own-change",
        "GET /admin-only",
        "GET /claims-admin-only",
        "POST /admin-change",
    }
    assert role_matrix.unconfirmed_privileged_routes(cases, ordinary_changes=ordinary) == [
        "POST /sometimes-confirmed: privileged on every request, not only when ..."
    ]


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
