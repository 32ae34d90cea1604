"""Who may read the metrics (SPEC §14): the bearer of ``METRICS_TOKEN``, or anyone on the
listener of ``METRICS_BIND``, or nobody; never anyone who asks the API.

The listener is told apart by the local port of the connection gunicorn hands the app
(``gunicorn.socket``); these tests hand the app a real socket bound to that port, and
``tests/e2e/test_gunicorn_metrics.py`` runs the same under gunicorn.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from healthapp import cli, config, supervisor
from healthapp.app import create_app as create_core_app
from healthapp.config import ConfigurationError, load_settings
from healthapp.reports.app import create_app as create_reports_app
from tests.assertions import assert_problem
from tests.processes import free_port

TOKEN = "metrics-token-of-the-tests-" + "t" * 16
PROMETHEUS_TEXT = CONTENT_TYPE_LATEST
#: Each API and the metrics pages it has.
PAGES = {"core": ["/metrics"], "reports": ["/metrics", "/metrics/sync"]}


@pytest.fixture
def make_api(redis_url: str, redis_client: Any) -> Callable[..., Any]:
    """``make_api(name, **settings)``: a test client of that API with those settings."""

    def make(name: str, **values: Any) -> Any:
        settings = config.Testing()
        settings.REDIS_URL = redis_url if name == "reports" else None
        # The Core API's database is never asked: /metrics does not touch it.
        settings.DATABASE_URL = "postgresql://metrics-tests.invalid/unused"
        for key, value in values.items():
            setattr(settings, key, value)
        factory = create_reports_app if name == "reports" else create_core_app
        return factory(settings).test_client()

    return make


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A socket bound to a free local port: a connection's local end on that port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        yield sock


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _on(sock: socket.socket) -> dict[str, Any]:
    """The environ of a request gunicorn accepted on ``sock``'s port."""
    return {"gunicorn.socket": sock}


@pytest.mark.parametrize("name", list(PAGES))
def test_with_neither_setting_the_metrics_are_not_served(make_api, name):
    api = make_api(name)
    for path in PAGES[name]:
        assert_problem(api.get(path), 404)
        assert_problem(api.get(path, headers=_bearer(TOKEN)), 404)


@pytest.mark.parametrize("name", list(PAGES))
def test_with_a_token_only_its_bearer_reads_the_metrics(make_api, name):
    api = make_api(name, METRICS_TOKEN=SecretStr(TOKEN))
    refused = {
        "no header": {},
        "wrong token": _bearer("metrics-token-of-someone-else-" + "x" * 16),
        "token prefix": _bearer(TOKEN[:-1]),
        "token and more": _bearer(TOKEN + "x"),
        "other scheme": {"Authorization": f"Basic {TOKEN}"},
        "bare token": {"Authorization": TOKEN},
    }
    for path in PAGES[name]:
        for case, headers in refused.items():
            response = api.get(path, headers=headers)
            assert_problem(response, 401, f"{path} {case}")
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
            assert TOKEN not in response.get_data(as_text=True)
        for scheme in ("Bearer", "bearer"):
            response = api.get(path, headers={"Authorization": f"{scheme} {TOKEN}"})
            assert response.status_code == 200, (path, response.get_data(as_text=True))
            assert response.headers["Content-Type"] == PROMETHEUS_TEXT
    assert "healthapp_http_requests_total" in api.get("/metrics", headers=_bearer(TOKEN)).text


@pytest.mark.parametrize("name", list(PAGES))
def test_with_a_bind_the_metrics_are_served_there_only(make_api, listening, name):
    port = listening.getsockname()[1]
    api = make_api(name, METRICS_BIND=f"127.0.0.1:{port}")

    for path in PAGES[name]:
        served = api.get(path, environ_base=_on(listening))
        assert served.status_code == 200, served.get_data(as_text=True)
        assert served.headers["Content-Type"] == PROMETHEUS_TEXT
        assert_problem(api.get(path), 404)  # on the API's address
        assert_problem(api.get(path, headers=_bearer(TOKEN)), 404)
    assert "healthapp_http_requests_total" in api.get("/metrics", environ_base=_on(listening)).text
    # The listener serves the metrics and nothing else; the API still serves the rest.
    for path in ("/healthz", "/api/v1/users/", "/metrics/other"):
        assert_problem(api.get(path, environ_base=_on(listening)), 404)
    assert api.get("/healthz").status_code == 200
    refused = api.post("/metrics", environ_base=_on(listening))
    assert_problem(refused, 405)
    assert refused.headers["Allow"] == "GET, HEAD"


def test_a_connection_on_another_port_is_the_apis(make_api, listening):
    port = listening.getsockname()[1]
    api = make_api("core", METRICS_BIND=f"127.0.0.1:{port + 1}")

    assert_problem(api.get("/metrics", environ_base=_on(listening)), 404)
    assert api.get("/healthz", environ_base=_on(listening)).status_code == 200


@pytest.mark.parametrize("name", list(PAGES))
def test_with_a_bind_and_a_token_the_listener_asks_for_the_token(make_api, listening, name):
    port = listening.getsockname()[1]
    api = make_api(name, METRICS_BIND=f"127.0.0.1:{port}", METRICS_TOKEN=SecretStr(TOKEN))

    for path in PAGES[name]:
        refused = api.get(path, environ_base=_on(listening))
        assert_problem(refused, 401)
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        wrong = api.get(path, headers=_bearer(TOKEN + "x"), environ_base=_on(listening))
        assert_problem(wrong, 401)
        assert api.get(path, headers=_bearer(TOKEN), environ_base=_on(listening)).status_code == 200
        assert_problem(api.get(path, headers=_bearer(TOKEN)), 404)


def test_the_sync_page_on_the_listener_is_a_503_while_redis_is_down(listening):
    settings = config.Testing()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.STORE_TIMEOUT_SECONDS = 1
    settings.METRICS_BIND = f"127.0.0.1:{listening.getsockname()[1]}"
    api = create_reports_app(settings).test_client()

    sync_page = api.get("/metrics/sync", environ_base=_on(listening))

    assert_problem(sync_page, 503)
    assert sync_page.headers["Retry-After"]
    # The process's own figures still answer.
    assert api.get("/metrics", environ_base=_on(listening)).status_code == 200


def test_the_metrics_are_hidden_from_the_openapi_document(make_api):
    api = make_api("reports", METRICS_TOKEN=SecretStr(TOKEN))
    paths = api.get("/openapi.json").json["paths"]
    assert not [path for path in paths if path.startswith("/metrics")]


# The settings --------------------------------------------------------------------------


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METRICS_TOKEN", "METRICS_BIND", "HEALTHAPP_SECRETS_FILE", "HEALTHAPP_ENV"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("value", ["9100", "localhost", ":9100", "host:port", "h:0", "h:70000"])
def test_a_metrics_bind_that_is_not_host_and_port_is_refused(monkeypatch, no_settings, value):
    monkeypatch.setenv("METRICS_BIND", value)
    with pytest.raises(ConfigurationError, match="METRICS_BIND must be host:port"):
        load_settings("development")


@pytest.mark.parametrize("value", ["127.0.0.1:9100", "0.0.0.0:9100", "[::1]:9100", "m:1"])
def test_a_metrics_bind_of_host_and_port_is_taken(monkeypatch, no_settings, value):
    monkeypatch.setenv("METRICS_BIND", value)
    assert value == load_settings("development").METRICS_BIND


PRODUCTION = {
    "SECRET_KEY": "s3cr3t-" + "k" * 40,
    "DATABASE_URL": "postgresql://app@db.internal/healthapp",
    "REDIS_URL": "redis://cache.internal:6379/0",
}


def test_the_metrics_token_may_come_from_the_secrets_file(monkeypatch, no_settings, tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({**PRODUCTION, "METRICS_TOKEN": TOKEN}))
    monkeypatch.setenv("HEALTHAPP_SECRETS_FILE", str(secrets))

    settings = load_settings("production")

    assert settings.METRICS_TOKEN is not None
    assert settings.METRICS_TOKEN.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)


def test_production_refuses_a_short_metrics_token_and_needs_none(monkeypatch, no_settings):
    for key, value in PRODUCTION.items():
        monkeypatch.setenv(key, value)
    assert load_settings("production").METRICS_TOKEN is None  # starts, serving no metrics
    monkeypatch.setenv("METRICS_TOKEN", "short-token")
    with pytest.raises(ConfigurationError) as refused:
        load_settings("production")
    assert "METRICS_TOKEN must be at least 32 characters" in str(refused.value)
    assert "short-token" not in str(refused.value)
    assert load_settings("development").METRICS_TOKEN is not None


# healthapp run: two APIs, two metrics binds ----------------------------------------------


def test_run_refuses_one_metrics_bind_for_two_apis(monkeypatch, no_settings):
    monkeypatch.setenv("METRICS_BIND", "127.0.0.1:9100")
    result = CliRunner().invoke(cli.main, ["run"])
    assert result.exit_code == 2
    assert "--core-metrics-bind and --reports-metrics-bind" in result.output


@pytest.mark.parametrize(
    "arguments",
    [
        ["--core-metrics-bind", "9100"],
        ["--core-metrics-bind", "127.0.0.1:9100", "--reports-metrics-bind", "127.0.0.1:9100"],
    ],
)
def test_run_refuses_metrics_binds_it_cannot_use(no_settings, arguments):
    result = CliRunner().invoke(cli.main, ["run", *arguments])
    assert result.exit_code == 2, result.output


def test_run_gives_each_api_its_own_addresses(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("METRICS_BIND", "127.0.0.1:1")  # never handed on as it is
    commands = supervisor.stack_commands(
        config.Testing(HEALTHAPP_INSTANCE_PATH=str(tmp_path)),
        database_url="postgresql://unused.invalid/db",
        redis_url="redis://unused.invalid:6379/0",
        host="0.0.0.0",  # noqa: S104
        core_port=8000,
        reports_port=8001,
        workers=2,
        core_metrics_bind="127.0.0.1:9100",
        reports_metrics_bind="127.0.0.1:9101",
    )
    core_env, reports_env = commands["core-api"][1], commands["reports-api"][1]
    assert (core_env["BIND"], core_env["METRICS_BIND"]) == ("0.0.0.0:8000", "127.0.0.1:9100")
    assert (reports_env["BIND"], reports_env["METRICS_BIND"]) == ("0.0.0.0:8001", "127.0.0.1:9101")
    assert "METRICS_BIND" not in commands["sync-worker"][1]
    for name in ("core-api", "reports-api"):
        assert "--bind" not in commands[name][0]  # it would replace the metrics bind
