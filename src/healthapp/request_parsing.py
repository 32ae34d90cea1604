"""Parsing request bodies and query strings into Pydantic models, documented in OpenAPI.

APIFlask's own Pydantic input flattens error locations and parses JSON leniently; these
decorators read the raw body once with ``model_validate_json`` and answer with the
problem documents of SPEC §3 (400 malformed, 415 not JSON, 422 invalid). Each also notes
on the view what it reads, which :mod:`healthapp.openapi` documents.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import pydantic_core
from flask import request
from pydantic import BaseModel, ValidationError

from healthapp.problems import Problem, validation_problem
from healthapp.schemas_common import NUL_MESSAGE, nul_locations

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

_BODY = "documented_body"
_QUERY = "documented_query"


def require_json_content_type() -> None:
    """A 415 problem unless the request says its body is JSON."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise Problem(415, "The request body must be JSON (Content-Type: application/json).")


def parse_body(model: type[M]) -> M:
    """The request body validated as ``model`` straight from its raw bytes."""
    require_json_content_type()
    raw = request.get_data(cache=False) or b""
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as error:
        raise validation_problem(error) from None
    # JSON can carry U+0000 only escaped; PostgreSQL stores it in no text or JSONB column.
    if b"\\u0000" in raw:
        reject_nul_characters(pydantic_core.from_json(raw))
    return parsed


def parse_query(model: type[M]) -> M:
    """The query string validated as ``model``."""
    data: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        data[key] = values if len(values) > 1 else values[0]
    try:
        parsed = model.model_validate(data)
    except ValidationError as error:
        raise validation_problem(error, prefix=("query",)) from None
    reject_nul_characters(data, prefix=("query",), where="query string")
    return parsed


def reject_nul_characters(
    value: Any, *, prefix: tuple[str | int, ...] = (), where: str = "request body"
) -> None:
    """A 422 problem naming every string (or key) in ``value`` that holds U+0000."""
    errors = [
        {"loc": list(loc), "msg": NUL_MESSAGE, "type": "string_nul"}
        for loc in nul_locations(value, prefix)
    ]
    if errors:
        raise Problem(422, f"The {where} failed validation.", errors=errors)


def documents_body(model: type[BaseModel], *, example: Any = None) -> Callable[[F], F]:
    """Document ``model`` as the view's JSON body; the view reads the body itself."""

    def decorator(view: F) -> F:
        setattr(view, _BODY, (model, example))
        return view

    return decorator


def documented_body(view: Callable[..., Any]) -> tuple[type[BaseModel], Any] | None:
    """The model (and example) of the JSON body ``view`` reads, if it reads one."""
    body: tuple[type[BaseModel], Any] | None = getattr(view, _BODY, None)
    return body


def documented_query(view: Callable[..., Any]) -> type[BaseModel] | None:
    """The model of the query string ``view`` reads, if it reads one."""
    query: type[BaseModel] | None = getattr(view, _QUERY, None)
    return query


def json_body(model: type[BaseModel], *, example: Any = None) -> Callable[[F], F]:
    """Validate the JSON body as ``model`` and pass it as ``body``; documents it in OpenAPI."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["body"] = parse_body(model)
            return view(*args, **kwargs)

        return documents_body(model, example=example)(wrapper)  # type: ignore[return-value]

    return decorator


def query_args(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the query string as ``model`` and pass it as ``query``; documents it."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["query"] = parse_query(model)
            return view(*args, **kwargs)

        setattr(wrapper, _QUERY, model)
        return wrapper  # type: ignore[return-value]

    return decorator
