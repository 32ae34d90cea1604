"""RFC 9457 problem documents: the one shape every error of both APIs takes."""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis.exceptions
from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import Response
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from healthapp import errors
from healthapp.errors import RETRY_AFTER_SECONDS

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: Where every problem type lives; a type is this and the status, or a name more precise.
PROBLEM_TYPE_BASE = "https://myhealthapp.example/problems/"
#: A staff login (or a change of its authenticator) whose password was right but that gave
#: no valid, unused code of its second factor.
SECOND_FACTOR_REQUIRED = PROBLEM_TYPE_BASE + "second-factor-required"
#: A staff login whose password was right, by an account that must enrol a second factor first.
SECOND_FACTOR_ENROLMENT_REQUIRED = PROBLEM_TYPE_BASE + "second-factor-enrolment-required"
#: The challenge every 401 carries (RFC 9110 §11.6.1).
WWW_AUTHENTICATE = 'Bearer realm="healthapp"'

TITLES = {
    308: "Permanent redirect",
    400: "Malformed request",
    401: "Authentication required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An error answered with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        problem_type: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.problem_type = problem_type or f"{PROBLEM_TYPE_BASE}{status}"
        self.detail = detail
        self.errors = list(errors or [])
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra or {}

    def to_dict(self) -> dict[str, Any]:
        """The problem document's members."""
        body: dict[str, Any] = {
            "type": self.problem_type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "errors": self.errors,
        }
        body.update(self.extra)
        return body


#: The status each refusal of the domain is answered with.
DOMAIN_STATUS: dict[type[errors.DomainError], int] = {
    errors.InvalidCursor: 400,  # before InvalidInput: the query string cannot be read at all
    errors.InvalidInput: 422,
    errors.NotAuthenticated: 401,
    errors.NotAllowed: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooManyAttempts: 429,
    errors.Unavailable: 503,
}

#: The refusals whose problem type (and title) is more precise than their status.
DOMAIN_PROBLEM_TYPES: dict[type[errors.DomainError], tuple[str, str]] = {
    errors.SecondFactorRequired: (SECOND_FACTOR_REQUIRED, "Second factor required"),
    errors.SecondFactorNotEnrolled: (
        SECOND_FACTOR_ENROLMENT_REQUIRED,
        "Second factor enrolment required",
    ),
}


def from_domain_error(error: errors.DomainError) -> Problem:
    """The problem document for a refusal of the domain."""
    if isinstance(error, errors.Unavailable):
        return store_unreachable(error.detail, errors=error.errors, retry_after=error.retry_after)
    status = next((code for kind, code in DOMAIN_STATUS.items() if isinstance(error, kind)), 422)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if isinstance(error, errors.TooManyAttempts):
        headers["Retry-After"] = str(error.retry_after)
    problem_type, title = DOMAIN_PROBLEM_TYPES.get(type(error), (None, None))
    return Problem(
        status,
        error.detail,
        errors=error.errors,
        title=title,
        headers=headers,
        problem_type=problem_type,
    )


#: The detail of the 503 answered while a store does not answer.
STORE_UNREACHABLE_DETAIL = "A backing store is unreachable; retry shortly."


def store_unreachable(
    detail: str = STORE_UNREACHABLE_DETAIL,
    *,
    errors: Sequence[dict[str, Any]] = (),
    retry_after: int = RETRY_AFTER_SECONDS,
) -> Problem:
    """The 503 answered while a store cannot serve the request; it may succeed once retried."""
    return Problem(503, detail, errors=errors, headers={"Retry-After": str(retry_after)})


def problem_response(problem: Problem) -> Response:
    """Serialise ``problem`` as an ``application/problem+json`` response."""
    response = Response(
        orjson.dumps(problem.to_dict()), status=problem.status, mimetype=PROBLEM_MEDIA_TYPE
    )
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def not_found(what: str = "resource") -> Problem:
    """The 404 given for a missing resource and for one the caller may not see."""
    return Problem(404, f"The {what} does not exist.")


def pydantic_errors(
    error: ValidationError, *, prefix: Iterable[str | int] = ()
) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc", "msg"}`` entries; input values are never echoed."""
    return [
        {"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def validation_problem(error: ValidationError, *, prefix: Iterable[str | int] = ()) -> Problem:
    """A 400 for JSON that does not parse, else a 422 listing every invalid field."""
    path = tuple(prefix)
    errors = pydantic_errors(error, prefix=path)
    if any(item["type"] == "json_invalid" for item in errors):
        return Problem(400, "The request body is not valid JSON.", errors=errors)
    where = "query string" if path[:1] == ("query",) else "request body"
    return Problem(422, f"The {where} failed validation.", errors=errors)


#: What an unreachable Redis raises: a 503 on both APIs. PostgreSQL's are in
#: :mod:`healthapp.database`, which the Reports API does not load.
REDIS_UNREACHABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def register_errorhandlers(app: APIFlask) -> None:
    """Answer every error, ours and Werkzeug's, with a problem document."""

    @app.errorhandler(Problem)
    def handle_problem(problem: Problem) -> Response:
        return problem_response(problem)

    @app.errorhandler(errors.DomainError)
    def handle_domain_error(error: errors.DomainError) -> Response:
        return problem_response(from_domain_error(error))

    @app.error_processor
    def handle_apiflask_error(error: HTTPError) -> Response:
        return problem_response(
            Problem(
                error.status_code,
                str(error.message),
                headers={k: str(v) for k, v in dict(error.headers or {}).items()},
            )
        )

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        detail = error.description or TITLES.get(status, "Error")
        if status == 429:
            detail = f"Rate limit of {detail} exceeded; retry after the Retry-After delay."
        elif status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            detail = (
                f"The request body is larger than {limit:,} bytes; send it in smaller parts."
                if limit
                else "The request body is too large."
            )
        return problem_response(Problem(status, detail, headers=headers))

    def handle_redis_unreachable(error: Exception) -> Response:
        app.logger.warning("backing store unreachable: %s", type(error).__name__)
        return problem_response(store_unreachable())

    for error_class in REDIS_UNREACHABLE:
        app.register_error_handler(error_class, handle_redis_unreachable)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        # The message is left out: a database error quotes the values it rejected, and
        # those may be health data or credentials. The type and the stack locate the bug.
        app.logger.error(
            "unhandled error: %s\n%s",
            type(error).__name__,
            "".join(traceback.format_tb(error.__traceback__)),
        )
        return problem_response(Problem(500, "The server could not complete the request."))
