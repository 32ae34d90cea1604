"""The role matrix of an API, derived from its route table.

Every view declares who may call it (``@requires(...)`` or ``@public`` in
``healthapp.auth.access``, or ``allowed_roles`` set by hand on health views). The functions
here read those declarations from any Flask app, so the same checks run for the Core API
and the Reports API, and a route added later is checked the moment it is registered:

- ``undeclared_views(app)``: view functions that declare nothing (must be empty);
- ``route_cases(app)`` / ``route_cases_of(app_factory)``: one ``RouteCase`` per (rule,
  method), to parametrise tests with;
- ``check_no_token`` / ``check_role``: the expected answer for no token and for each role;
- ``check_other_users_resource``: a patient naming another user is answered as if that
  user did not exist (404, never 403);
- ``unconfirmed_privileged_routes``: privileged routes that do not confirm the caller's role
  as stored now (``@privileged`` in ``healthapp.auth.privileged``; must be empty).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule, UUIDConverter
from werkzeug.test import TestResponse

from healthapp.domain.roles import Role
from tests.assertions import assert_problem

#: Endpoints the framework adds (static files, the OpenAPI document and its UI).
FRAMEWORK_ENDPOINTS = frozenset({"static"})
FRAMEWORK_ENDPOINT_PREFIXES = ("openapi.",)
#: Methods Flask answers by itself for every rule.
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
#: Methods whose requests carry a JSON body in the matrix (an empty object).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Methods that change something.
CHANGE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_MISSING = object()


@dataclass(frozen=True)
class RouteCase:
    """One method of one rule, with what its view declares."""

    endpoint: str
    rule: str
    method: str
    allowed_roles: frozenset[Role] | None  # None: public, no token needed
    token_type: str  # "access" or "refresh"
    arguments: tuple[str, ...]
    #: The roles ``@privileged`` confirms in the database, if the view declares it.
    privileged_roles: frozenset[Role] | None = None
    #: Whether only some requests are privileged (``@privileged(..., when=...)``).
    privileged_sometimes: bool = False

    @property
    def is_public(self) -> bool:
        return self.allowed_roles is None

    @property
    def id(self) -> str:
        return f"{self.method} {self.rule}"


def is_framework_endpoint(endpoint: str) -> bool:
    """Whether ``endpoint`` is Flask's or APIFlask's own (static files, docs, spec)."""
    return endpoint in FRAMEWORK_ENDPOINTS or endpoint.startswith(FRAMEWORK_ENDPOINT_PREFIXES)


def _application_rules(app: Flask) -> Iterable[Rule]:
    for rule in app.url_map.iter_rules():
        if not is_framework_endpoint(rule.endpoint):
            yield rule


def undeclared_views(app: Flask) -> list[str]:
    """``rule -> endpoint`` of every application view that does not declare its roles."""
    return sorted(
        f"{rule.rule} -> {rule.endpoint}"
        for rule in _application_rules(app)
        if getattr(app.view_functions[rule.endpoint], "allowed_roles", _MISSING) is _MISSING
    )


def invalid_declarations(app: Flask) -> list[str]:
    """Views whose ``allowed_roles`` is neither ``None`` nor a non-empty set of roles."""
    bad = []
    for rule in _application_rules(app):
        roles = getattr(app.view_functions[rule.endpoint], "allowed_roles", None)
        if roles is None:
            continue
        if (
            not isinstance(roles, frozenset)
            or not roles
            or not all(isinstance(role, Role) for role in roles)
        ):
            bad.append(f"{rule.rule} -> {rule.endpoint}: {roles!r}")
    return sorted(bad)


def route_cases(app: Flask) -> list[RouteCase]:
    """Every (rule, method) the app serves, except the framework's own routes."""
    cases = []
    for rule in _application_rules(app):
        view = app.view_functions[rule.endpoint]
        roles = getattr(view, "allowed_roles", None)
        for method in sorted((rule.methods or set()) - IMPLICIT_METHODS):
            cases.append(
                RouteCase(
                    endpoint=rule.endpoint,
                    rule=rule.rule,
                    method=method,
                    allowed_roles=frozenset(roles) if roles is not None else None,
                    token_type=getattr(view, "token_type", "access"),
                    arguments=tuple(sorted(rule.arguments)),
                    privileged_roles=getattr(view, "privileged_roles", None),
                    privileged_sometimes=getattr(view, "privileged_when", None) is not None,
                )
            )
    return sorted(cases, key=lambda case: (case.rule, case.method))


def route_cases_of(app_factory: Callable[[], Flask]) -> list[RouteCase]:
    """The cases of the app ``app_factory`` builds (e.g. at collection time, to parametrise)."""
    return route_cases(app_factory())


def case_ids(cases: Iterable[RouteCase]) -> list[str]:
    return [case.id for case in cases]


def build_path(app: Flask, case: RouteCase, values: Mapping[str, Any] | None = None) -> str:
    """The case's path with ``values`` filled in and every other argument made up.

    Made-up arguments are random UUIDs for ``<uuid:...>`` and random words otherwise, so
    they name nothing that exists.
    """
    rule = next(
        r
        for r in app.url_map.iter_rules(case.endpoint)
        if r.rule == case.rule and case.method in (r.methods or ())
    )
    filled: dict[str, Any] = {}
    for name in rule.arguments:
        if values and name in values:
            filled[name] = values[name]
        elif isinstance(rule._converters.get(name), UUIDConverter):
            filled[name] = uuid.uuid4()
        else:
            filled[name] = f"nobody-{uuid.uuid4().hex[:8]}"
    adapter = app.url_map.bind("localhost")
    return adapter.build(case.endpoint, filled, method=case.method)


def call(client: FlaskClient, case: RouteCase, path: str, token: str | None = None) -> TestResponse:
    """Call ``path`` with the case's method; bodies are an empty JSON object."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"json": {}} if case.method in BODY_METHODS else {}
    return client.open(path, method=case.method, headers=headers, **kwargs)


def _describe(case: RouteCase, caller: str, response: TestResponse) -> str:
    return f"{case.id} as {caller}: {response.status_code} {response.get_data(as_text=True)[:300]}"


def check_no_token(app: Flask, client: FlaskClient, case: RouteCase) -> TestResponse:
    """No token: a protected route is a 401 problem; a public one is neither 401 nor 403."""
    response = call(client, case, build_path(app, case))
    context = _describe(case, "nobody", response)
    if case.is_public:
        assert response.status_code not in (401, 403), context
        assert response.status_code < 500, context
    else:
        assert_problem(response, 401, context)
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), context
    return response


def check_role(
    app: Flask,
    client: FlaskClient,
    case: RouteCase,
    *,
    role: Role,
    token: str,
    own_values: Mapping[str, Any],
) -> TestResponse:
    """A role the route does not allow is a 403 problem; an allowed one gets past both checks.

    ``own_values`` fills the path arguments that name the caller (their user id or
    username), so an allowed patient reaches the view rather than the 404 for strangers.
    """
    response = call(client, case, build_path(app, case, own_values), token)
    context = _describe(case, role.value, response)
    if case.is_public or role in (case.allowed_roles or ()):
        assert response.status_code not in (401, 403), context
        assert response.status_code < 500, context
    else:
        assert_problem(response, 403, context)
    return response


def check_other_users_resource(
    app: Flask,
    client: FlaskClient,
    case: RouteCase,
    *,
    token: str,
    other_values: Mapping[str, Any],
    stranger_values: Mapping[str, Any],
) -> TestResponse:
    """A patient naming another (existing) user is answered as for nobody: never a 403.

    The answer must equal the one for ``stranger_values`` (a user that does not exist), so
    ids cannot be probed; without a body to validate first, that answer is a 404 problem.
    """
    response = call(client, case, build_path(app, case, other_values), token)
    context = _describe(case, "patient naming another user", response)
    assert response.status_code != 403, context
    nobody = call(client, case, build_path(app, case, stranger_values), token)
    assert (response.status_code, response.get_json()) == (
        nobody.status_code,
        nobody.get_json(),
    ), context
    if case.method not in BODY_METHODS:
        assert_problem(response, 404, context)
    return response


def token_for(case: RouteCase, tokens: Callable[[str], str]) -> str:
    """The caller's token of the kind the route takes (``tokens("access" | "refresh")``)."""
    return tokens(case.token_type)


def unconfirmed_privileged_routes(
    cases: Iterable[RouteCase], *, ordinary_changes: Iterable[str]
) -> list[str]:
    """The cases that should confirm the caller's stored role (``@privileged``) and do not.

    Every change is privileged unless ``ordinary_changes`` names it (``"POST /path"``): a
    route added later must say which it is. A change no patient may make, and a read only
    admins may make, is privileged on every request: its declaration has no ``when``, and
    confirms at least the roles the route admits.
    """
    ordinary = set(ordinary_changes)
    missing = []
    for case in cases:
        if case.id in ordinary:
            continue
        admits_no_patient = not case.is_public and Role.PATIENT not in (case.allowed_roles or ())
        always = (case.method in CHANGE_METHODS and admits_no_patient) or (
            case.method == "GET" and case.allowed_roles == frozenset({Role.ADMIN})
        )
        if not (always or case.method in CHANGE_METHODS):
            continue
        if case.privileged_roles is None:
            missing.append(f"{case.id}: no @privileged")
        elif always and case.privileged_sometimes:
            missing.append(f"{case.id}: privileged on every request, not only when ...")
        elif always and not (case.allowed_roles or frozenset()) <= case.privileged_roles:
            missing.append(f"{case.id}: admits {case.allowed_roles}, confirms fewer")
    return sorted(missing)
