"""What the HTTP machinery answers on its own (redirects, over-long headers, OPTIONS, HEAD,
the bearer scheme's case) is a problem document or a correct empty answer, on both APIs,
through the test client (``tests/e2e/test_protocol_answers.py``: through gunicorn too)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from healthapp import gunicorn_conf
from healthapp.domain.roles import Role
from healthapp.extensions import limiter
from healthapp.problems import PROBLEM_MEDIA_TYPE
from healthapp.webapp import MAX_HEADER_LINE_BYTES
from tests.assertions import assert_problem
from tests.factories import ApiClient
from tests.security.apps import build_apps

API_NAMES = ["core", "reports"]
#: Headers every response carries whose value changes from one request to the next.
PER_REQUEST = {"Date", "X-Request-ID"}
#: The name of the padding header, and the longest value that keeps its line within limit.
PADDING = "X-Padding"
LONGEST_VALUE = MAX_HEADER_LINE_BYTES - len(PADDING) - len(": \r\n")


@pytest.fixture
def clients(api: ApiClient, reports: Any) -> dict[str, Any]:
    return {"core": api.client, "reports": reports}


def _stable_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in PER_REQUEST}


# Redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("api_name", API_NAMES)
def test_a_path_without_its_trailing_slash_is_a_308_problem(
    clients: dict[str, Any], synced: dict[str, Any], redis_client: Any, api_name: str
) -> None:
    client, patient = clients[api_name], synced["patient"]
    path = synced["reports"].rstrip("/") if api_name == "reports" else "/api/v1/users"
    response = client.get(path, headers=patient.headers)

    body = assert_problem(response, 308)
    assert response.headers["Location"] == f"http://localhost{path}/"
    assert "<" not in response.get_data(as_text=True)
    assert body["title"] == "Permanent redirect"
    assert response.headers["X-Request-ID"]  # the request is traced like any other
    assert response.headers["Cache-Control"] == "private, no-cache"

    head = client.head(path, headers=patient.headers)
    assert head.status_code == 308
    assert head.get_data() == b""
    assert _stable_headers(head) == _stable_headers(response)


def test_a_post_without_its_trailing_slash_keeps_its_method_through_the_308(
    api: ApiClient,
) -> None:
    operator = api.user(Role.OPERATOR)
    response = api.client.post("/api/v1/checkups", json={"checkups": []}, headers=operator.headers)
    assert_problem(response, 308)
    assert response.headers["Location"] == "http://localhost/api/v1/checkups/"
    followed = api.client.post(
        "/api/v1/checkups", json={"checkups": []}, headers=operator.headers, follow_redirects=True
    )
    assert followed.status_code == 200, followed.json


# Over-long headers ---------------------------------------------------------------------


@pytest.mark.parametrize("api_name", API_NAMES)
def test_an_over_long_header_is_a_431_problem(
    clients: dict[str, Any], synced: dict[str, Any], redis_client: Any, api_name: str
) -> None:
    client, path, patient = clients[api_name], synced[api_name], synced["patient"]
    assert client.get(path, headers=patient.headers).status_code == 200  # token verified

    longest = client.get(path, headers={**patient.headers, PADDING: "a" * LONGEST_VALUE})
    assert longest.status_code == 200
    too_long = client.get(path, headers={**patient.headers, PADDING: "a" * (LONGEST_VALUE + 1)})
    body = assert_problem(too_long, 431)
    assert body["detail"] == f"The {PADDING} header is longer than 8,190 bytes."
    assert "aaaa" not in too_long.get_data(as_text=True)  # the value is not echoed

    anonymous = client.get("/healthz", headers={"User-Agent": "b" * 20_000})
    assert_problem(anonymous, 431)


def test_gunicorn_lets_through_every_line_the_apps_refuse_themselves() -> None:
    assert gunicorn_conf.limit_request_field_size > 2 * MAX_HEADER_LINE_BYTES
    assert gunicorn_conf.limit_request_line == 8190


# OPTIONS and HEAD ----------------------------------------------------------------------


@pytest.mark.parametrize("api_name", API_NAMES)
def test_options_is_a_204_with_allow_and_no_body(
    clients: dict[str, Any], synced: dict[str, Any], redis_client: Any, api_name: str
) -> None:
    client = clients[api_name]
    for path in (synced[api_name], "/healthz", "/api/v1/users/"):
        response = client.options(path, headers=synced["patient"].headers)
        assert response.status_code == 204, path
        assert "GET" in response.headers["Allow"].split(", "), path
        assert "OPTIONS" in response.headers["Allow"].split(", "), path
        assert "Content-Type" not in response.headers, path
        assert response.get_data() == b"", path
    assert_problem(client.options("/api/v1/nothing-here/"), 404)


@pytest.mark.parametrize("api_name", API_NAMES)
def test_a_cors_preflight_is_answered_as_before_without_a_body(
    app: Any,
    database_url: str,
    redis_url: str,
    engine: Engine,
    synced: dict[str, Any],
    api_name: str,
) -> None:
    origin = "https://app.myhealth.example"
    core, reports = build_apps(
        database_url=database_url, redis_url=redis_url, engine=engine, CORS_ORIGINS=[origin]
    )
    try:
        client = {"core": core, "reports": reports}[api_name].test_client()
        preflight = client.options(
            synced[api_name],
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
    finally:
        limiter.init_app(app)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" not in preflight.headers
    assert preflight.get_data() == b""


@pytest.mark.parametrize("api_name", API_NAMES)
@pytest.mark.parametrize("accept_encoding", ["identity", "gzip"])
def test_head_answers_what_get_answers_without_the_body(
    clients: dict[str, Any],
    synced: dict[str, Any],
    redis_client: Any,
    api_name: str,
    accept_encoding: str,
) -> None:
    client, patient = clients[api_name], synced["patient"]
    headers = {**patient.headers, "Accept-Encoding": accept_encoding}
    client.get(synced[api_name], headers=headers)  # the token verified: either path may answer
    for path, status in (
        (synced[api_name], 200),
        ("/healthz", 200),
        ("/openapi.json", 200),
        ("/api/v1/users/", 403),  # staff only
    ):
        got, head = client.get(path, headers=headers), client.head(path, headers=headers)
        assert got.status_code == head.status_code == status, path
        assert head.get_data() == b"", path
        assert _stable_headers(head) == _stable_headers(got), path
        assert int(head.headers["Content-Length"]) == len(got.get_data()), path
        expected = "application/json" if status == 200 else PROBLEM_MEDIA_TYPE
        assert head.mimetype == expected, path
