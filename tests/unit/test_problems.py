"""The one problem-document shape (RFC 9457) every error takes (SPEC §3)."""

from __future__ import annotations

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from healthapp import errors
from healthapp.problems import (
    PROBLEM_MEDIA_TYPE,
    TITLES,
    Problem,
    from_domain_error,
    not_found,
    problem_response,
    pydantic_errors,
    validation_problem,
)


class _Body(BaseModel):
    password: str
    age: int


def _validation_error(raw: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Body.model_validate_json(raw)
    return caught.value


def test_document_has_every_member_even_without_errors() -> None:
    body = Problem(404, "The user does not exist.").to_dict()
    assert body == {
        "type": "https://myhealthapp.example/problems/404",
        "title": "Not found",
        "status": 404,
        "detail": "The user does not exist.",
        "errors": [],
    }


def test_document_carries_errors_and_extra_members() -> None:
    errors = [{"loc": ["email"], "msg": "taken"}]
    body = Problem(409, "Conflict.", errors=errors, extra={"indices": [3]}).to_dict()
    assert body["errors"] == errors
    assert body["indices"] == [3]
    assert body["title"] == TITLES[409]


def test_response_is_problem_json_with_headers() -> None:
    response = problem_response(Problem(429, "Slow down.", headers={"Retry-After": "60"}))
    assert response.status_code == 429
    assert response.mimetype == PROBLEM_MEDIA_TYPE == "application/problem+json"
    assert response.headers["Retry-After"] == "60"
    assert orjson.loads(response.get_data())["status"] == 429


def test_unknown_status_still_has_a_title() -> None:
    assert Problem(418, "Teapot.").to_dict()["title"] == "Error"


def test_not_found_names_what_is_missing() -> None:
    problem = not_found("profile")
    assert problem.status == 404
    assert "profile" in problem.detail


def test_validation_problem_is_422_with_every_field() -> None:
    problem = validation_problem(_validation_error(b'{"password": 5, "age": "x"}'))
    assert problem.status == 422
    assert sorted(e["loc"] for e in problem.errors) == [["age"], ["password"]]
    assert problem.detail == "The request body failed validation."


def test_malformed_json_is_400() -> None:
    problem = validation_problem(_validation_error(b'{"password": '))
    assert problem.status == 400
    assert problem.errors[0]["type"] == "json_invalid"


def test_query_validation_names_the_query_string() -> None:
    problem = validation_problem(_validation_error(b'{"password": "p"}'), prefix=("query",))
    assert problem.errors[0]["loc"] == ["query", "age"]
    assert "query string" in problem.detail


def test_errors_never_echo_the_input() -> None:
    secret = "hunter2-is-my-password"
    error = _validation_error(orjson.dumps({"password": secret, "age": secret}))
    errors = pydantic_errors(error)
    assert secret not in orjson.dumps(errors).decode()
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("bad"), 422),
        (errors.InvalidCursor("bad cursor"), 400),
        (errors.NotAllowed("no"), 403),
        (errors.NotFound("gone"), 404),
        (errors.Conflict("taken"), 409),
        (errors.Unavailable("down"), 503),
    ],
)
def test_each_domain_refusal_has_its_status(error: errors.DomainError, status: int) -> None:
    problem = from_domain_error(error)
    assert (problem.status, problem.detail, problem.title) == (status, error.detail, TITLES[status])


def test_a_domain_refusal_keeps_its_field_errors() -> None:
    entries = [{"loc": ["body", "serial_number"], "msg": "taken"}]
    problem = from_domain_error(errors.Conflict("The serial number is taken.", errors=entries))
    assert problem.to_dict()["errors"] == entries


def test_an_unavailable_store_says_when_to_retry() -> None:
    problem = from_domain_error(errors.Unavailable("Try again.", retry_after=7))
    assert problem.headers == {"Retry-After": "7"}
    assert from_domain_error(errors.NotFound("x")).headers == {}


def test_second_factor_refusals_have_problem_types_of_their_own() -> None:
    needed = from_domain_error(errors.SecondFactorRequired("Send a code."))
    enrol = from_domain_error(errors.SecondFactorNotEnrolled("Enrol first."))
    plain = Problem(401, "Wrong password.")
    assert needed.status == enrol.status == 401
    assert needed.to_dict()["type"] == "https://myhealthapp.example/problems/second-factor-required"
    assert enrol.to_dict()["type"] == (
        "https://myhealthapp.example/problems/second-factor-enrolment-required"
    )
    assert plain.to_dict()["type"] == "https://myhealthapp.example/problems/401"
    for problem in (needed, enrol):
        assert problem.headers["WWW-Authenticate"].startswith("Bearer")
    assert (needed.title, enrol.title) == (
        "Second factor required",
        "Second factor enrolment required",
    )


def test_too_many_attempts_is_a_429_with_its_wait() -> None:
    problem = from_domain_error(errors.TooManyAttempts("Wait.", retry_after=120))
    assert problem.status == 429
    assert problem.headers == {"Retry-After": "120"}
    assert problem.to_dict()["type"] == "https://myhealthapp.example/problems/429"
