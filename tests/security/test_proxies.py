"""``TRUSTED_PROXY_COUNT`` (SPEC §14): both APIs take the client address that many hops back
in ``X-Forwarded-For``; with 0 they ignore the header, so a client cannot choose its address.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import request, request_started
from sqlalchemy import Engine

from healthapp.extensions import limiter
from tests.factories import ApiClient, synced_patient
from tests.security.apps import build_apps

PROXY = "10.0.0.254"
#: What the client wrote itself, then what each proxy appended: the nearest proxy is last.
FORWARDED = "10.9.9.9, 203.0.113.66, 10.0.0.1"

BuildApps = Callable[..., tuple[Any, Any]]


@pytest.fixture
def apps_with(app: Any, database_url: str, redis_url: str, engine: Engine) -> Iterator[BuildApps]:
    """Builds both APIs with chosen settings; the suite's app gets the limiter back after."""

    def build(**values: Any) -> tuple[Any, Any]:
        return build_apps(database_url=database_url, redis_url=redis_url, engine=engine, **values)

    yield build
    limiter.init_app(app)


def _addresses_seen(app: Any, path: str, **kwargs: Any) -> tuple[Any, list[str | None]]:
    """The answer to ``GET path`` from the proxy, and the client addresses the Flask app
    saw while answering it (none when a layer in front answered)."""
    seen: list[str | None] = []

    def record(_sender: Any, **_extra: Any) -> None:
        seen.append(request.remote_addr)

    with request_started.connected_to(record, app):
        response = app.test_client().get(path, environ_base={"REMOTE_ADDR": PROXY}, **kwargs)
    return response, seen


@pytest.mark.parametrize(
    ("trusted_proxies", "address"),
    [(0, PROXY), (1, "10.0.0.1"), (2, "203.0.113.66"), (4, PROXY)],
    ids=["none: the header is ignored", "one", "two", "more than the header names"],
)
def test_both_apis_take_the_address_trusted_proxy_count_hops_back(
    apps_with: BuildApps, trusted_proxies: int, address: str
) -> None:
    for api in apps_with(TRUSTED_PROXY_COUNT=trusted_proxies):
        response, seen = _addresses_seen(api, "/healthz", headers={"X-Forwarded-For": FORWARDED})
        assert response.status_code == 200
        assert seen == [address]


def test_behind_a_trusted_proxy_the_reports_first_page_keeps_its_fast_layer(
    apps_with: BuildApps, api: ApiClient, sync: Any
) -> None:
    _core, reports = apps_with(TRUSTED_PROXY_COUNT=1)
    patient, _item = synced_patient(api, sync)
    path = f"/api/v1/users/{patient.username}/"
    headers = {**patient.headers, "X-Forwarded-For": FORWARDED}
    first, seen = _addresses_seen(reports, path, headers=headers)  # verifies the token
    assert first.status_code == 200
    assert seen == ["10.0.0.1"]
    again, seen = _addresses_seen(reports, path, headers=headers)
    assert again.status_code == 200
    assert again.get_data() == first.get_data()
    assert seen == []  # the stored page, past the Flask app
