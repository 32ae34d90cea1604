"""What the HTTP machinery answers on its own (redirects, over-long headers, OPTIONS, HEAD,
the bearer scheme's case), through gunicorn as production runs both APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthapp import gunicorn_conf
from healthapp.problems import PROBLEM_MEDIA_TYPE
from healthapp.webapp import MAX_HEADER_LINE_BYTES
from tests.factories import TestUser
from tests.processes import running_apis

#: The name of the padding header, and the longest value that keeps its line within limit.
PADDING = "X-Padding"
LONGEST_VALUE = MAX_HEADER_LINE_BYTES - len(PADDING) - len(": \r\n")


@pytest.fixture
def servers(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Both APIs under gunicorn with the production settings module."""
    with running_apis(database_url, redis_url, tmp_path) as (core, reports):
        yield {"core": core, "reports": reports}


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM_MEDIA_TYPE, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _lower_case(user: TestUser) -> dict[str, str]:
    return {"Authorization": f"bearer {user.access_token}"}


@pytest.mark.slow
def test_both_apis_answer_these_through_gunicorn(
    servers: dict[str, str], synced: dict[str, Any], redis_client: Any
) -> None:
    patient: TestUser = synced["patient"]
    with httpx.Client(timeout=10) as http:
        for api_name, base in servers.items():
            url = base + synced[api_name]
            for _ in range(2):  # on the Reports API the second read takes the fast path
                read = http.get(url, headers=_lower_case(patient))
                assert read.status_code == 200, (api_name, read.text)

            redirect = http.get(base + "/api/v1/users", headers=patient.headers)
            _assert_problem(redirect, 308)
            assert redirect.headers["Location"].endswith("/api/v1/users/")

            padded = {**patient.headers, PADDING: "a" * (LONGEST_VALUE + 1)}
            _assert_problem(http.get(url, headers=padded), 431)
            # Past gunicorn's own ceiling gunicorn answers, in HTML (see gunicorn_conf).
            beyond = {PADDING: "a" * (gunicorn_conf.limit_request_field_size + 1)}
            assert http.get(base + "/healthz", headers=beyond).status_code == 431

            options = http.options(url, headers=patient.headers)
            assert options.status_code == 204, api_name
            assert "GET" in options.headers["Allow"]
            assert "Content-Type" not in options.headers
            assert options.content == b""

            for accept_encoding in ("identity", "gzip"):
                headers = {**patient.headers, "Accept-Encoding": accept_encoding}
                got, head = http.get(url, headers=headers), http.head(url, headers=headers)
                assert head.status_code == got.status_code == 200
                assert head.content == b""
                assert head.headers["Content-Type"] == got.headers["Content-Type"]
                assert head.headers["Content-Length"] == got.headers["Content-Length"]
                for name in ("Content-Encoding", "ETag", "Last-Modified"):
                    assert head.headers.get(name) == got.headers.get(name), (api_name, name)
                if accept_encoding == "identity":
                    assert int(head.headers["Content-Length"]) == len(got.content)
