"""The Procfile, docker-compose.yml and .env.example describe one topology, without secrets."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from healthapp import gunicorn_conf

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("core", "reports", "worker", "beat")


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def program(command: str) -> list[str]:
    """The words of the final program a shell command runs (after ``exec`` and ``env``)."""
    words = shlex.split(command.split("&&")[-1])
    while words and (words[0] in ("exec", "env", "-u") or re.match(r"^[A-Z_]+=", words[0])):
        if words.pop(0) == "-u":
            words.pop(0)  # the variable ``env`` removes
    return [word for word in words if not word.startswith("$")]


def test_procfile_runs_four_processes_with_beat_on_its_own():
    processes = procfile()
    assert list(processes) == list(APP_SERVICES)
    assert "healthapp.app:create_app()" in processes["core"]
    assert "healthapp.reports.app:create_app()" in processes["reports"]
    worker = shlex.split(processes["worker"].split("&&")[-1])
    assert "worker" in worker
    assert not {"-B", "--beat"} & set(worker)
    beat = shlex.split(processes["beat"])
    assert "beat" in beat
    assert "healthapp.sync.beat.ResilientScheduler" in beat
    for name in ("core", "reports"):
        assert "-c python:healthapp.gunicorn_conf" in processes[name]
    # Each API has its own metrics folder: each gunicorn master empties its own on start.
    folders = {
        re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", processes[n]).group(1)
        for n in ("core", "reports")
    }
    assert len(folders) == 2


def test_compose_runs_the_procfile_topology():
    document = compose()
    services = document["services"]
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["command"][-2:] == ["--appendonly", "yes"]
    processes = procfile()
    for name in APP_SERVICES:
        command = services[name]["command"]
        assert command[:2] == ["sh", "-c"]
        assert program(command[2]) == program(processes[name]), name
        assert ("healthapp migrate" in command[2]) == ("healthapp migrate" in processes[name])
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["HEALTHAPP_ENV"] == "production"
    assert services["core"]["ports"] == ["8000:8000"]
    assert services["reports"]["ports"] == ["8001:8001"]


def test_no_secret_is_committed():
    example = (ROOT / ".env.example").read_text()
    values = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    for key in (
        "SECRET_KEY",
        "JWT_PRIVATE_KEY",
        "JWT_PUBLIC_KEYS",
        "METRICS_TOKEN",
        "POSTGRES_PASSWORD",
    ):
        assert values[key] == "", key
    assert set(procfile_variables()) <= set(values) | {"PATH"}
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    compose_text = (ROOT / "docker-compose.yml").read_text()
    for key in ("SECRET_KEY", "JWT_PRIVATE_KEY", "JWT_PUBLIC_KEYS", "POSTGRES_PASSWORD"):
        assert f"${{{key}:?" in compose_text  # required from .env, no default


def test_only_the_core_api_is_given_the_private_key():
    services = compose()["services"]
    assert "JWT_PRIVATE_KEY" in services["core"]["environment"]
    for name in ("reports", "worker", "beat"):
        assert "JWT_PRIVATE_KEY" not in services[name]["environment"], name
    assert "-u JWT_PRIVATE_KEY" in procfile()["reports"]


def procfile_variables() -> list[str]:
    return re.findall(r"\$\{([A-Z_]+)", "\n".join(procfile().values()))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (["127.0.0.1:8000"], 4, 0, False)),
        ({"HEALTHAPP_ENV": "production"}, (["127.0.0.1:8000"], 4, 0, True)),
        (
            {
                "BIND": "0.0.0.0:8001",
                "GUNICORN_THREADS": "8",
                "GUNICORN_MAX_REQUESTS": "5000",
                "GUNICORN_REUSE_PORT": "1",
            },
            (["0.0.0.0:8001"], 8, 5000, True),
        ),
        (
            {"HEALTHAPP_ENV": "production", "GUNICORN_REUSE_PORT": "0"},
            (["127.0.0.1:8000"], 4, 0, False),
        ),
        ({"METRICS_BIND": "127.0.0.1:9100"}, (["127.0.0.1:8000", "127.0.0.1:9100"], 4, 0, False)),
        ({"METRICS_BIND": ""}, (["127.0.0.1:8000"], 4, 0, False)),
    ],
)
def test_gunicorn_settings_come_from_the_environment(monkeypatch, env, expected):
    import importlib

    for key in (
        "BIND",
        "METRICS_BIND",
        "GUNICORN_THREADS",
        "GUNICORN_MAX_REQUESTS",
        "GUNICORN_REUSE_PORT",
        "HEALTHAPP_ENV",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module = importlib.reload(gunicorn_conf)
    settings = (module.bind, module.threads, module.max_requests, module.reuse_port)
    assert settings == expected
    assert module.worker_class == "gthread"


@pytest.mark.parametrize(
    ("binds", "metrics_bind", "refusal"),
    [
        (["127.0.0.1:8000"], None, None),
        (["127.0.0.1:8000", "127.0.0.1:9100"], "127.0.0.1:9100", None),
        (["127.0.0.1:8000"], "127.0.0.1:9100", "not among gunicorn's binds"),
        (["10.0.0.5:9100", "127.0.0.1:9100"], "127.0.0.1:9100", "a port of its own"),
        (["127.0.0.1:8000", "9100"], "9100", "must be host:port"),
    ],
)
def test_gunicorn_refuses_a_metrics_bind_the_app_cannot_tell_apart(binds, metrics_bind, refusal):
    if refusal is None:
        gunicorn_conf.check_metrics_bind(binds, metrics_bind)
        return
    with pytest.raises(RuntimeError, match=refusal):
        gunicorn_conf.check_metrics_bind(binds, metrics_bind)
