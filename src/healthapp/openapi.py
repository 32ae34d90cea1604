"""The OpenAPI document of both APIs: what each operation accepts, answers and links to.

APIFlask builds the document from the views' ``@doc``/``@output`` declarations; one spec
processor then adds what the views declare elsewhere (the roles of ``@requires``, the
bodies and queries of :mod:`healthapp.request_parsing`) and the conventions every
operation keeps (SPEC §3): problem documents, request ids, conditional GETs, rate limits,
readable operation ids and the links from a create to what it created.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from apiflask import APIFlask
from pydantic import BaseModel
from werkzeug.routing import Rule

from healthapp.observability import REQUEST_ID, REQUEST_ID_HEADER
from healthapp.problems import PROBLEM_MEDIA_TYPE
from healthapp.request_parsing import documented_body, documented_query

#: Where every component schema lives; Pydantic names the nested models into it.
SCHEMA_REF = "#/components/schemas/"

#: ``<uuid:user_id>`` in a Werkzeug rule is ``{user_id}`` in an OpenAPI path.
_RULE_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_UUID_ARGUMENT = re.compile(r"<uuid:([^<>]+)>")
_PATH_PARAMETER = re.compile(r"{([^{}]+)}")

#: The OpenAPI schema of a problem document (SPEC §3).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "errors"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

# Set outside any view (request-id hook, Flask-Limiter, conditional GETs), so written here.
_HEADERS: dict[str, dict[str, Any]] = {
    REQUEST_ID_HEADER: {
        "description": "The request's id (the caller's own, if it sent a valid one); "
        "log lines and audit events carry it.",
        "schema": {"type": "string", "pattern": REQUEST_ID.pattern},
    },
    "ETag": {
        "description": "The version of this answer; send it back as If-None-Match.",
        "schema": {"type": "string"},
    },
    "Last-Modified": {
        "description": "When the sync last wrote this report.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Limit": {
        "description": "Requests allowed in the current window.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in the current window.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Reset": {
        "description": "When the current window ends (Unix time, seconds).",
        "schema": {"type": "integer", "minimum": 0},
    },
}
_RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

_PARAMETERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "name": REQUEST_ID_HEADER,
        "in": "header",
        "required": False,
        "description": "An id of the caller's choosing for this request; any other value "
        "is replaced by a generated one.",
        "schema": {"type": "string", "pattern": REQUEST_ID.pattern},
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "The ETag of the copy the caller holds: a 304 if it is still current.",
        "schema": {"type": "string"},
    },
}


def register_openapi_conventions(app: APIFlask) -> None:
    """Complete both APIs' documents with what the views declare and SPEC §3 promises."""

    @app.spec_processor
    def document_conventions(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
        if not isinstance(spec, dict):  # only with SPEC_PROCESSOR_PASS_OBJECT, never set here
            return spec
        components = spec.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        merge_nested_schemas(spec)
        for rule, view, operation in _operations(app, spec):
            _document_path_parameters(rule, operation)
            _document_inputs(view, operation, schemas)
            _document_security(view, operation)
            operation["operationId"] = _operation_id(app, view)
            _document_responses(operation)
        _document_links(spec)
        schemas["Problem"] = PROBLEM_SCHEMA
        for unused in ("HTTPError", "ValidationError"):
            schemas.pop(unused, None)
        components["headers"] = _HEADERS
        components["parameters"] = _PARAMETERS
        _check_references(spec, spec)
        return spec


def _operations(
    app: APIFlask, spec: dict[str, Any]
) -> Iterator[tuple[Rule, Callable[..., Any], dict[str, Any]]]:
    """Each documented operation with the view that serves it."""
    paths = spec.get("paths", {})
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        path = _RULE_ARGUMENT.sub(r"{\1}", rule.rule)
        if view is None or path not in paths:
            continue
        for method in sorted(rule.methods or ()):
            operation = paths[path].get(method.lower())
            if isinstance(operation, dict):
                yield rule, view, operation


# Schemas ------------------------------------------------------------------------------


def merge_nested_schemas(spec: dict[str, Any]) -> None:
    """Name each model's schema once, by the model's own name.

    APIFlask files a model nested in another as ``Parent.Model`` (``UserPage.UserRead``
    beside ``UserRead``); a client generator then meets two schemas titled ``UserRead`` and
    drops both. Pydantic's own names are unique within a document, so the parent prefix
    is dropped and the copies, identical once their references are renamed too, merged.
    """
    schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
    renamed = {name: name.split(".", 1)[1] for name in schemas if "." in name}
    if not renamed:
        return
    refs = {SCHEMA_REF + old: SCHEMA_REF + new for old, new in renamed.items()}
    _rename_refs(spec, refs)
    for old, new in renamed.items():
        schema = schemas.pop(old)
        _add_schema(schemas, new, schema)


def _rename_refs(node: Any, refs: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in refs:
            node["$ref"] = refs[ref]
        mapping = node.get("discriminator", {}).get("mapping", {})
        for tag, target in mapping.items():
            mapping[tag] = refs.get(target, target)
        for value in node.values():
            _rename_refs(value, refs)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, refs)


def _check_references(node: Any, spec: dict[str, Any]) -> None:
    """Fail loudly on a reference to nothing: a client generator would drop its operation."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = spec
            for part in ref.removeprefix("#/").split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            if target is None:
                raise ValueError(f"the OpenAPI document refers to {ref}, which it lacks")
        for value in node.values():
            _check_references(value, spec)
    elif isinstance(node, list):
        for value in node:
            _check_references(value, spec)


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    known = schemas.setdefault(name, schema)
    if known != schema:
        raise ValueError(f"two different schemas are named {name!r} in the OpenAPI document")


def model_ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to the schema of ``model``, which a view's ``@output`` documents."""
    return {"$ref": SCHEMA_REF + model.__name__}


def model_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """A reference to ``model``'s schema, filed with the models it uses in ``schemas``."""
    schema = model.model_json_schema(ref_template=SCHEMA_REF + "{model}")
    for name, nested in schema.pop("$defs", {}).items():
        _add_schema(schemas, name, nested)
    _add_schema(schemas, model.__name__, schema)
    return model_ref(model)


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """One query parameter per field of ``model`` (by its alias, e.g. ``from``)."""
    schema = model.model_json_schema(ref_template=SCHEMA_REF + "{model}")
    for name, nested in schema.pop("$defs", {}).items():
        _add_schema(schemas, name, nested)
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        field_schema = _without_null(field_schema)
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema.pop("description")
        parameter["schema"] = field_schema
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string: ``null`` is not one of its values."""
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return dict(schema)
    kept = [option for option in options if option != {"type": "null"}]
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}


# Operations ---------------------------------------------------------------------------


def _document_path_parameters(rule: Rule, operation: dict[str, Any]) -> None:
    """A ``<uuid:...>`` path parameter is a UUID (anything else is a 404)."""
    uuids = set(_UUID_ARGUMENT.findall(rule.rule))
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter.get("name") in uuids:
            parameter["schema"] = {"type": "string", "format": "uuid"}


def _document_inputs(
    view: Callable[..., Any], operation: dict[str, Any], schemas: dict[str, Any]
) -> None:
    # APIFlask's @input parses with its own, lenient parser; these views parse the raw body
    # themselves (SPEC §3 problems), so what they read is documented here instead.
    body = documented_body(view)
    if body is not None:
        model, example = body
        content: dict[str, Any] = {"schema": model_schema(model, schemas)}
        if example is not None:
            content["example"] = example
        operation["requestBody"] = {"required": True, "content": {"application/json": content}}
    query = documented_query(view)
    parameters = operation.setdefault("parameters", [])
    if query is not None:
        parameters.extend(_query_parameters(query, schemas))
    if body is not None or query is not None:
        operation["responses"].setdefault("422", {})["description"] = "Validation error"
    parameters.append({"$ref": "#/components/parameters/RequestId"})
    if "304" in operation.get("responses", {}):
        parameters.append({"$ref": "#/components/parameters/IfNoneMatch"})


def _document_security(view: Callable[..., Any], operation: dict[str, Any]) -> None:
    # The roles declared with @requires are the one source: @doc stacked above @requires
    # would otherwise reset the operation's documented security to none.
    if getattr(view, "allowed_roles", None) is not None:
        operation["security"] = [{"BearerAuth": []}]


def _operation_id(app: APIFlask, view: Callable[..., Any]) -> str:
    """The view function's name (``create_user``); view names are unique in each app."""
    name: str = view.__name__
    same = [v for v in app.view_functions.values() if v.__name__ == name]
    if len(same) > 1:
        raise ValueError(f"two views are named {name!r}: the operationId would be ambiguous")
    return name


def _header_refs(*names: str) -> dict[str, dict[str, str]]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _document_responses(operation: dict[str, Any]) -> None:
    """Problem documents for errors, no body for a 304, and the headers each answer has."""
    responses: dict[str, Any] = operation.get("responses", {})
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": SCHEMA_REF + "Problem"}}}
    rate_limited = "429" in responses
    conditional = "304" in responses
    for status, response in responses.items():
        if not isinstance(response, dict):
            continue
        names = [REQUEST_ID_HEADER]
        if status[:1] in ("4", "5"):
            response["content"] = problem
        if status == "304":
            response.pop("content", None)
            names.append("ETag")
        if conditional and status == "200":
            names += ["ETag", "Last-Modified"]
        if rate_limited:
            names += _RATE_LIMIT_HEADERS
        if status in ("429", "503"):
            names.append("Retry-After")
        response["headers"] = {**response.get("headers", {}), **_header_refs(*names)}


# Links --------------------------------------------------------------------------------


def _document_links(spec: dict[str, Any]) -> None:
    """Link each create to what may follow it on what it created (read, change, delete).

    A ``POST`` answering 201 with an ``id`` created ``{path}/{<name>_id}``: each operation on
    that path or below it gets the new id from ``$response.body#/id``. A ``POST`` on a path
    with parameters answering 201 without an ``id`` (a profile) created that path itself.
    Path parameters the create already had are passed on from its request.
    """
    paths: dict[str, Any] = spec.get("paths", {})
    for path, operations in paths.items():
        create = operations.get("post")
        created = create and create.get("responses", {}).get("201")
        if not isinstance(created, dict):
            continue
        known = set(_PATH_PARAMETER.findall(path))
        links = created.setdefault("links", {})
        for target, names in _followers(spec, path, created, known):
            parameters = {
                name: f"$request.path.{name}" if name in known else "$response.body#/id"
                for name in names
            }
            links.setdefault(
                _link_name(target["operationId"]),
                {"operationId": target["operationId"], "parameters": parameters},
            )
        if not links:
            del created["links"]


def _followers(
    spec: dict[str, Any], path: str, created: dict[str, Any], known: set[str]
) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """The operations on what a create made, with the path parameters each needs."""
    paths: dict[str, Any] = spec["paths"]
    if _answers_with_id(spec, created):
        base = path.rstrip("/")
        for target_path, operations in paths.items():
            new = _new_parameter(base, target_path)
            needed = _PATH_PARAMETER.findall(target_path)
            if new is None or not set(needed) <= known | {new}:
                continue
            for operation in operations.values():
                if isinstance(operation, dict):
                    yield operation, needed
    elif known:
        for method, operation in paths[path].items():
            if method in ("get", "patch", "put", "delete") and isinstance(operation, dict):
                yield operation, sorted(known)


def _new_parameter(base: str, target_path: str) -> str | None:
    """The parameter naming the created resource in ``target_path``, if it is under it."""
    match = re.fullmatch(re.escape(base) + r"/{([^{}]+)}(/.*)?", target_path)
    return match.group(1) if match else None


def _answers_with_id(spec: dict[str, Any], response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith(SCHEMA_REF):
        schema = spec["components"]["schemas"].get(ref[len(SCHEMA_REF) :], {})
    return "id" in schema.get("properties", {})


def _link_name(operation_id: str) -> str:
    return "".join(part.capitalize() for part in operation_id.split("_"))
