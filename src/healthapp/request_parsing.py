"""Parsing request bodies and query strings into Pydantic models, documented in OpenAPI.

APIFlask's own Pydantic input flattens error locations and parses JSON leniently; these
decorators read the raw body once with ``model_validate_json`` and answer with the
problem documents of SPEC §3 (400 malformed, 415 not JSON, 422 invalid).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import pydantic_core
from apiflask.scaffold import _annotate
from flask import request
from pydantic import BaseModel, ValidationError

from healthapp.problems import Problem, validation_problem
from healthapp.schemas_common import NUL_MESSAGE, nul_locations

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


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


def json_body(model: type[BaseModel], *, example: Any = None) -> Callable[[F], F]:
    """Validate the JSON body as ``model`` and pass it as ``body``; documents it in OpenAPI."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["body"] = parse_body(model)
            return view(*args, **kwargs)

        _annotate(
            wrapper,
            body=model,
            body_example=example,
            body_examples=None,
            content_type="application/json",
        )
        return wrapper  # type: ignore[return-value]

    return decorator


def query_args(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the query string as ``model`` and pass it as ``query``; documents it."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["query"] = parse_query(model)
            return view(*args, **kwargs)

        spec = getattr(wrapper, "_spec", None)
        if spec is None or spec.get("args") is None:
            _annotate(wrapper, args=[])
        wrapper._spec["args"].append((model, "query"))  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
