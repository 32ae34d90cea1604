"""The stack the commands run on: the servers the settings name, or embedded ones under the
instance folder; and, for ``healthapp run``, the APIs and the sync worker as child
processes, stopped together.

A supervisor of its own rather than honcho: honcho sends SIGTERM to every process of the
worker at once, which kills the Celery pool mid-batch; here only each child's main process
gets it, which for the worker is a warm shutdown (docs/operations.md, "Stopping").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import click

from healthapp.config import Base

#: A child process: its command line and its environment.
Command = tuple[list[str], dict[str, str]]


def database_url(stack: ExitStack, settings: Base) -> str:
    """``DATABASE_URL``, or the embedded server's (started for as long as ``stack`` lives).

    Raises :class:`healthapp.embedded.EmbeddedServerError` when the embedded server found
    under the instance folder cannot be used.
    """
    if settings.DATABASE_URL:
        return settings.DATABASE_URL
    from healthapp.embedded import start_postgres

    click.echo("DATABASE_URL not set: starting embedded PostgreSQL under the instance folder")
    server = start_postgres(Path(settings.INSTANCE_PATH))
    stack.callback(server.stop)
    return server.url


def redis_url(stack: ExitStack, settings: Base, *, owner: bool) -> str:
    """``REDIS_URL``, or the embedded server's under the instance folder.

    The ``owner`` (``healthapp run``) shuts the embedded server down, saving its data, when
    ``stack`` closes; other commands attach to it if it runs, and leave it running.
    """
    if settings.REDIS_URL:
        return settings.REDIS_URL
    from healthapp.embedded import start_redis

    click.echo("REDIS_URL not set: using embedded Redis under the instance folder")
    server = start_redis(Path(settings.INSTANCE_PATH))
    if owner:
        stack.callback(_shutdown_saving, server.server)
    return server.url


def _shutdown_saving(server: Any) -> None:
    import redis

    # The server closes the connection as it exits.
    with suppress(redis.RedisError):
        server.shutdown(save=True)


def stack_commands(
    settings: Base,
    *,
    database_url: str,
    redis_url: str,
    host: str,
    core_port: int,
    reports_port: int,
    workers: int,
    core_metrics_bind: str | None = None,
    reports_metrics_bind: str | None = None,
) -> dict[str, Command]:
    """The processes of ``healthapp run``: both APIs under gunicorn and the worker with beat.

    Each API serves its metrics on its own ``*_metrics_bind`` when given (``METRICS_BIND``
    names one listener, so it is never handed to both).
    """
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    env.pop("METRICS_BIND", None)
    # Each API's workers add up their metrics in a folder of its own (as the Procfile).
    metrics = Path(os.environ.get("METRICS_DIR") or Path(settings.INSTANCE_PATH, "metrics"))

    def api_env(port: int, metrics_bind: str | None, folder: str) -> dict[str, str]:
        bound = {"BIND": f"{host}:{port}", "PROMETHEUS_MULTIPROC_DIR": str(metrics / folder)}
        return {**env, **bound, **({"METRICS_BIND": metrics_bind} if metrics_bind else {})}

    return {
        "core-api": (
            gunicorn_command("healthapp.app:create_app()", workers),
            api_env(core_port, core_metrics_bind, "core"),
        ),
        "reports-api": (
            gunicorn_command("healthapp.reports.app:create_app()", workers),
            {
                **api_env(reports_port, reports_metrics_bind, "reports"),
                "GUNICORN_THREADS": os.environ.get("REPORTS_THREADS", "1"),
            },
        ),
        "sync-worker": (worker_with_beat_command(settings.LOG_LEVEL), env),
    }


def worker_with_beat_command(loglevel: str) -> list[str]:
    """The Celery worker with beat inside it, one task at a time: the sync worker of
    ``healthapp run`` (production runs beat as a process of its own: the Procfile)."""
    return [
        *(sys.executable, "-m", "celery", "-A", "healthapp.worker", "worker", "--beat"),
        *("--scheduler", "healthapp.sync.beat.ResilientScheduler"),
        *("--concurrency", "1", "--loglevel", loglevel),
    ]


def gunicorn_command(app: str, workers: int) -> list[str]:
    """gunicorn with the project's configuration (``healthapp.gunicorn_conf``), which takes
    its addresses from ``BIND`` and ``METRICS_BIND`` (a ``--bind`` would replace both)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:healthapp.gunicorn_conf",
        app,
        "--workers",
        str(workers),
    ]


def supervise(commands: dict[str, Command]) -> None:
    """Run ``commands`` until one exits or the user interrupts; then stop them all."""
    children = {
        name: subprocess.Popen(command, env=env)  # noqa: S603
        for name, (command, env) in commands.items()
    }
    for name, child in children.items():
        click.echo(f"started {name} (pid {child.pid})")
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    click.echo(f"{name} exited with status {child.returncode}; stopping", err=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # the main process only: a warm shutdown
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        click.echo("stopped")
