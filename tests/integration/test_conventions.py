"""Conventions every endpoint keeps (SPEC §3): problem documents, never a 500 for bad
input, the OpenAPI document and its UI, and the health probes.

The bad-input checks run over the route table, so a route added later is checked too.
"""

from __future__ import annotations

import ast
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask

import healthapp
from healthapp import config
from healthapp.app import create_app
from healthapp.database import make_engine
from healthapp.domain.roles import Role
from healthapp.request_parsing import documented_body, documented_query
from tests import role_matrix
from tests.assertions import assert_client_error, assert_problem
from tests.factories import ApiClient
from tests.routes import CORE_CASES as CASES
from tests.routes import OWNER_ARGUMENT


def _has_body(app: Any, case: role_matrix.RouteCase) -> bool:
    return documented_body(app.view_functions[case.endpoint]) is not None


def _has_query(app: Any, case: role_matrix.RouteCase) -> bool:
    return documented_query(app.view_functions[case.endpoint]) is not None


BODY_CASES = [c for c in CASES if c.method in role_matrix.BODY_METHODS]
QUERY_CASES = [c for c in CASES if c.method == "GET"]
UUID_CASES = [c for c in CASES if "<uuid:" in c.rule]


def _caller_for(api: ApiClient, case: role_matrix.RouteCase) -> Any:
    """A caller the route admits, so bad input meets the view, not the role check."""
    roles = case.allowed_roles or frozenset(Role)
    return api.user(Role.ADMIN if Role.ADMIN in roles else sorted(roles)[0])


def _token(case: role_matrix.RouteCase, caller: Any) -> str:
    return caller.refresh_token if case.token_type == "refresh" else caller.access_token


# Problem documents for the framework's own errors ---------------------------------------


def test_unknown_path_is_a_404_problem(api: ApiClient) -> None:
    assert_problem(api.get("/api/v1/nothing-here"), 404)
    assert_problem(api.get("/api/v1/users/not-a-uuid", as_=api.user(Role.ADMIN)), 404)


def test_wrong_method_is_a_405_problem_with_allow(api: ApiClient) -> None:
    response = api.call("PUT", "/api/v1/machines/", as_=api.user(Role.ADMIN), json={})
    assert_problem(response, 405)
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", '{"username": "a", "password": "b"}'),
        ("application/x-www-form-urlencoded", "username=a&password=b"),
        (None, '{"username": "a", "password": "b"}'),
    ],
)
def test_non_json_body_is_a_415_problem(
    api: ApiClient, content_type: str | None, data: str
) -> None:
    response = api.post("/api/v1/auth/token", data=data, content_type=content_type)
    assert_problem(response, 415)


def test_json_suffix_media_types_are_json(api: ApiClient) -> None:
    response = api.post(
        "/api/v1/auth/token",
        data='{"username": "nobody", "password": "wrong"}',
        content_type="application/merge-patch+json",
    )
    assert_problem(response, 401)


def test_body_over_max_content_length_is_a_413_problem(
    api: ApiClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024)
    admin = api.user(Role.ADMIN)
    filler = {"name": "x", "details": "d" * 2000}
    for path, as_ in (
        ("/api/v1/auth/token", None),
        ("/api/v1/users/", None),
        (f"/api/v1/users/{admin.id}/diseases", admin),
    ):
        response = api.post(path, as_=as_, json=filler)
        assert_problem(response, 413)
        assert response.json["detail"] == (
            "The request body is larger than 1,024 bytes; send it in smaller parts."
        )
    # At the limit, the body is read and judged on its content.
    fits = {"name": "flu", "details": "d" * 900}
    assert api.post(f"/api/v1/users/{admin.id}/diseases", as_=admin, json=fits).status_code == 201


def test_default_limit_is_16_mib(api: ApiClient) -> None:
    body = b'{"username": "' + b"u" * (16 * 1024 * 1024) + b'", "password": "p"}'
    response = api.post("/api/v1/auth/token", data=body, content_type="application/json")
    assert_problem(response, 413)


def test_unexpected_error_is_a_500_problem_that_discloses_nothing(
    app: Any, engine: Any, settings: Any
) -> None:
    broken = create_app(settings, engine=engine)

    @broken.get("/broken")
    def explode() -> None:
        raise RuntimeError("password=hunter2 at /srv/app.py line 7")

    explode.allowed_roles = None  # type: ignore[attr-defined]
    response = broken.test_client().get("/broken")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.get_data(as_text=True)
    assert "Traceback" not in body["detail"]


# Never a 500 for bad input, on every route ----------------------------------------------

BAD_BODIES = {
    "not utf-8": b'{"name": "\xff\xfe"}',
    "latin-1": '{"name": "café"}'.encode("latin-1"),
    "malformed": b'{"name": ',
    "empty": b"",
    "array": b"[]",
    "array of objects": b'[{"name": "x"}]',
    "null": b"null",
    "string": b'"hello"',
    "number": b"42",
    "huge int": b'{"name": 123456789012345678901234567890, "limit": 1e400}',
    "nul character": b'{"name": "a\\u0000b", "username": "x\\u0000"}',
    "nul key": b'{"na\\u0000me": "a"}',
    "lone surrogate": b'{"name": "\\ud800"}',
    "deep nesting": b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nulls everywhere": b'{"name": null, "username": null, "email": null, "checkups": null}',
    "wrong types": b'{"name": [], "email": {}, "active": "yes", "checkups": "all"}',
    "unknown fields only": b'{"zzz_unknown": 1}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
@pytest.mark.parametrize("case", BODY_CASES, ids=role_matrix.case_ids(BODY_CASES))
def test_bad_body_is_a_4xx_problem(
    app: Any, api: ApiClient, case: role_matrix.RouteCase, body: bytes
) -> None:
    caller = _caller_for(api, case)
    path = role_matrix.build_path(app, case, {OWNER_ARGUMENT: caller.id})
    response = api.client.open(
        path,
        method=case.method,
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {_token(case, caller)}"},
    )
    if _has_body(app, case):
        assert_client_error(response, f"{case.id}: {response.get_data(as_text=True)[:300]}")
    else:
        assert response.status_code < 500


# Bodies valid but for one field holding U+0000, which PostgreSQL cannot store.
NUL_BODIES = [
    ("POST", "/api/v1/users/", {"username": "nul", "email": "n@example.com"}, "password"),
    ("POST", "/api/v1/auth/token", {"username": "someone"}, "password"),
    ("PATCH", "/api/v1/users/{own}", {}, "password"),
    ("POST", "/api/v1/users/{own}/diseases", {}, "name"),
    ("POST", "/api/v1/users/{own}/diseases", {"name": "flu"}, "details"),
    ("POST", "/api/v1/machines/", {"machine_type": "ecg"}, "serial_number"),
    ("POST", "/api/v1/machines/", {"machine_type": "ecg", "serial_number": "S"}, "information"),
    ("POST", "/api/v1/machines/", {"serial_number": "S"}, "machine_type"),
]


@pytest.mark.parametrize(("method", "template", "body", "field"), NUL_BODIES)
def test_nul_character_is_a_422_naming_the_field(
    api: ApiClient, method: str, template: str, body: dict[str, Any], field: str
) -> None:
    admin = api.user(Role.ADMIN)
    path = template.format(own=admin.id)
    value = "long enough but \x00 inside"
    response = api.call(method, path, as_=admin, json={**body, field: value})
    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {"loc": [field], "msg": "must not contain the NUL character", "type": "string_nul"}
    ]


def test_nul_character_in_a_query_is_a_422(api: ApiClient) -> None:
    response = api.get("/api/v1/machines/?machine_type=ecg%00", as_=api.user())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query", "machine_type"]


BAD_QUERIES = {
    "unknown parameter": "zzz_unknown=1",
    "huge limit": "limit=" + "9" * 40,
    "negative limit": "limit=-5",
    "limit twice": "limit=1&limit=2",
    "tampered cursor": "cursor=bm90LWEtY3Vyc29y",
    "nul": "cursor=%00&username=%00&machine_type=%00&checkup_type=%00",
    "not utf-8": "username=%ff%fe&machine_type=%ff&user_id=%ff",
    "bad uuid": "user_id=not-a-uuid",
    "bad date": "from=2026-02-30&to=yesterday",
    "bad boolean": "active=maybe",
}


@pytest.mark.parametrize("query", BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
@pytest.mark.parametrize("case", QUERY_CASES, ids=role_matrix.case_ids(QUERY_CASES))
def test_bad_query_is_never_a_500(
    app: Any, api: ApiClient, case: role_matrix.RouteCase, query: str
) -> None:
    caller = _caller_for(api, case)
    path = role_matrix.build_path(app, case, {OWNER_ARGUMENT: caller.id})
    response = api.client.get(
        f"{path}?{query}", headers={"Authorization": f"Bearer {_token(case, caller)}"}
    )
    context = f"{case.id}?{query}: {response.get_data(as_text=True)[:300]}"
    assert response.status_code < 500, context
    if _has_query(app, case):
        # Lists validate their whole query string: nothing bad is silently ignored.
        assert_client_error(response, context)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "%00", "%ff", "' OR 1=1 --"])
@pytest.mark.parametrize("case", UUID_CASES, ids=role_matrix.case_ids(UUID_CASES))
def test_bad_id_in_a_path_is_a_404_problem(
    app: Any, api: ApiClient, case: role_matrix.RouteCase, bad_id: str
) -> None:
    caller = _caller_for(api, case)
    path = role_matrix.build_path(app, case, {OWNER_ARGUMENT: caller.id})
    segments = path.split("/")
    segments[-1] = bad_id
    kwargs = {"json": {}} if case.method in role_matrix.BODY_METHODS else {}
    response = api.client.open(
        "/".join(segments),
        method=case.method,
        headers={"Authorization": f"Bearer {_token(case, caller)}"},
        **kwargs,
    )
    assert_problem(response, 404)


# Responses -----------------------------------------------------------------------------


def test_api_responses_are_private_and_hardened(api: ApiClient) -> None:
    patient = api.user()
    response = api.get(f"/api/v1/users/{patient.id}", as_=patient)
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"]


# OpenAPI and docs ----------------------------------------------------------------------


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


@pytest.fixture(scope="module")
def openapi(app: Any) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    return document


def test_openapi_documents_every_route(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.")
    assert openapi["info"]["title"] == "MyHealthApp Core API"
    for case in CASES:
        if case.rule == "/metrics":
            continue  # hidden from the document on purpose
        operations = openapi["paths"].get(_openapi_path(case.rule), {})
        assert case.method.lower() in operations, case.id


def test_openapi_marks_exactly_the_protected_operations(openapi: dict[str, Any]) -> None:
    assert openapi["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    for case in CASES:
        operation = openapi["paths"].get(_openapi_path(case.rule), {}).get(case.method.lower())
        if operation is None:
            continue
        if case.is_public:
            assert not operation.get("security"), case.id
        else:
            assert operation["security"] == [{"BearerAuth": []}], case.id


def test_openapi_documents_errors_as_problem_documents(openapi: dict[str, Any]) -> None:
    problem = openapi["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "errors"}
    seen = 0
    for operations in openapi["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if str(status).startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"]
                    seen += 1
    assert seen > 20


def test_openapi_documents_request_bodies(openapi: dict[str, Any]) -> None:
    register = openapi["paths"]["/api/v1/users/"]["post"]
    schema_ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = openapi["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]
    assert {"username", "email", "password"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False


def test_docs_page_serves_the_ui(api: ApiClient) -> None:
    response = api.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "/openapi.json" in response.get_data(as_text=True)


# Health probes -------------------------------------------------------------------------


def test_healthz_and_readyz_need_no_token(api: ApiClient) -> None:
    assert api.get("/healthz").json == {"status": "ok"}
    assert api.get("/readyz").json == {"status": "ready", "checks": {"postgresql": "ok"}}


@pytest.fixture
def app_without_postgres(settings: Any) -> Iterator[APIFlask]:
    """A Core API whose PostgreSQL refuses connections (a port nothing listens on)."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = placeholder.getsockname()[1]
        unreachable = config.Testing()
        unreachable.DATABASE_URL = f"postgresql://postgres@127.0.0.1:{port}/healthapp"
        engine = make_engine(unreachable.DATABASE_URL, timeout_seconds=1)
        yield create_app(unreachable, engine=engine)
        engine.dispose()


def test_readyz_is_a_503_problem_when_postgres_is_down(
    app_without_postgres: APIFlask, api: ApiClient
) -> None:
    client = app_without_postgres.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    body = assert_problem(response, 503)
    assert "postgresql" in body["detail"]
    assert int(response.headers["Retry-After"]) > 0


def test_api_is_a_503_problem_when_postgres_is_down(
    app_without_postgres: APIFlask, api: ApiClient
) -> None:
    patient = api.user()  # made on the working database; its token is good on both apps
    client = app_without_postgres.test_client()
    for response in (
        client.get(f"/api/v1/users/{patient.id}", headers=patient.headers),
        client.post("/api/v1/auth/token", json={"username": "a", "password": "b"}),
        client.get("/api/v1/machines/", headers=patient.headers),
    ):
        body = assert_problem(response, 503)
        assert "127.0.0.1" not in body["detail"]
        assert response.headers["Retry-After"]


def test_every_operation_documents_its_success_answer(openapi: dict[str, Any]) -> None:
    # /readyz once documented only its 503, so a healthy 200 was an undocumented status.
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            statuses = [int(code) for code in operation["responses"]]
            assert any(200 <= code < 300 for code in statuses), f"{method.upper()} {path}"


# Imports run one way ---------------------------------------------------------------------

SOURCE = Path(healthapp.__file__).parent
#: The top floor: HTTP views, the apps' wiring and the entry points. Views may import any
#: other domain (the token endpoint looks users up, every view asks the policy), as long as
#: no two packages end up importing each other; nothing below imports this floor.
ENTRY_MODULES = {
    "healthapp.app",
    "healthapp.webapp",
    "healthapp.cli",
    "healthapp.worker",
    "healthapp.reports.app",
    "healthapp.reports.first_page",
}


def _module_files() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _import_graph() -> dict[str, set[str]]:
    """Every healthapp module and the healthapp modules it imports, anywhere in its body
    (an import inside a function or under ``TYPE_CHECKING`` counts: it is a dependency)."""
    modules = _module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.add(submodule if submodule in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _is_entry(module: str) -> bool:
    return module in ENTRY_MODULES or module.endswith(".views")


def test_no_two_packages_import_each_other_views_included() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _import_graph().items():
        packages.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module)
        )
    entry_points = {m for m in ENTRY_MODULES if _package(m) == m}  # whole-app modules
    for entry in entry_points:
        packages.pop(entry, None)
    assert _cycles(packages) == []


def test_no_two_modules_import_each_other_even_through_others() -> None:
    assert _cycles(_import_graph()) == []


def test_no_import_cycle_between_packages_below_the_views() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _import_graph().items():
        if _is_entry(module):
            continue
        packages.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module)
        )
    assert _cycles(packages) == []


def test_nothing_below_the_entry_floor_imports_it() -> None:
    upward = [
        (module, target)
        for module, targets in _import_graph().items()
        if not _is_entry(module)
        for target in targets
        if _is_entry(target)
    ]
    assert upward == []


def test_the_outbox_is_a_leaf_that_knows_no_domain() -> None:
    graph = _import_graph()
    outbox = {m: t for m, t in graph.items() if _package(m) == "healthapp.outbox"}
    assert outbox, "the outbox package moved"
    for module, targets in outbox.items():
        domains = {_package(t) for t in targets if _package(t) != "healthapp.outbox"}
        assert domains <= {"healthapp.orm", "healthapp.request_context"}, module


#: Service-floor modules: they raise the domain's refusals, never an HTTP type, and read the
#: request context without loading Flask or Prometheus.
SERVICE_MODULES = [
    "healthapp.accounts.service",
    "healthapp.checkups.ingest",
    "healthapp.checkups.service",
    "healthapp.machines.service",
    "healthapp.mfa.service",
    "healthapp.mfa.codes",
    "healthapp.mfa.secret_box",
    "healthapp.audit.service",
    "healthapp.audit.stream",
    "healthapp.outbox.service",
    "healthapp.auth.policy",
    "healthapp.request_context",
    "healthapp.unit_of_work",
]


@pytest.mark.parametrize("module", SERVICE_MODULES)
def test_services_raise_domain_errors_and_import_no_web_framework(module: str) -> None:
    tree = ast.parse(_module_files()[module].read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    web = {"flask", "apiflask", "werkzeug", "prometheus_client", "healthapp.observability"}
    assert not {name for name in imported if name.split(".")[0] in web or name in web}
    assert "healthapp.problems.Problem" not in imported
    assert "healthapp.problems" not in imported


DOMAIN_PACKAGES = ("accounts", "auth", "checkups", "machines", "mfa", "audit", "outbox")


def test_the_domains_commit_and_roll_back_only_through_the_unit_of_work() -> None:
    transaction_calls = re.compile(r"\.(commit|rollback)\(|\.begin\(\)")
    for module, path in _module_files().items():
        if module.split(".")[1:2] and module.split(".")[1] in DOMAIN_PACKAGES:
            assert not transaction_calls.search(path.read_text(encoding="utf-8")), module
