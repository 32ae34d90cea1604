"""The ``healthapp`` command: run the stack, make the first admin, sync, seed demo data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import click

from healthapp.config import ConfigurationError, load_settings


def _settings_or_exit():  # type: ignore[no-untyped-def]
    try:
        return load_settings()
    except ConfigurationError as error:
        raise click.ClickException(str(error)) from None


def _database_url(stack: ExitStack, settings) -> str:  # type: ignore[no-untyped-def]
    """``DATABASE_URL``, or the embedded server's (started for as long as ``stack`` lives)."""
    if settings.DATABASE_URL:
        return str(settings.DATABASE_URL)
    from healthapp.embedded import start_postgres

    click.echo("DATABASE_URL not set: starting embedded PostgreSQL under the instance folder")
    server = start_postgres(Path(settings.INSTANCE_PATH))
    stack.callback(server.stop)
    return server.url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """MyHealthApp: check-up ingest on PostgreSQL, per-user reports served from Redis."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the APIs bind.")
@click.option("--core-port", default=8000, show_default=True, help="Core API port.")
@click.option("--workers", default=2, show_default=True, help="gunicorn workers per API.")
def run(host: str, core_port: int, workers: int) -> None:
    """Run the whole stack in the foreground; Ctrl-C stops all of it."""
    settings = _settings_or_exit()
    with ExitStack() as stack:
        database_url = _database_url(stack, settings)
        from healthapp.migrate import upgrade

        upgrade(database_url)
        click.echo("database schema is up to date")
        env = {**os.environ, "DATABASE_URL": database_url}
        if settings.REDIS_URL is None:
            from healthapp.embedded import start_redis

            click.echo("REDIS_URL not set: starting embedded Redis under the instance folder")
            redis_server = start_redis(Path(settings.INSTANCE_PATH))
            stack.callback(redis_server.stop)
            env["REDIS_URL"] = redis_server.url
        processes = {
            "core-api": [
                sys.executable,
                "-m",
                "gunicorn",
                "healthapp.app:create_app()",
                "--bind",
                f"{host}:{core_port}",
                "--workers",
                str(workers),
                "--threads",
                "4",
                "--access-logfile",
                "-",
            ],
        }
        _supervise(processes, env)


def _supervise(commands: dict[str, list[str]], env: dict[str, str]) -> None:
    """Run ``commands`` until one exits or the user interrupts; then stop them all."""
    children = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}  # noqa: S603
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
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        click.echo("stopped")


@main.command("create-admin")
@click.argument("username")
@click.option("--email", default=None, help="Email address (default: USERNAME@localhost).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(username: str, email: str | None, password_stdin: bool) -> None:
    """Create an admin account; the password is prompted for or read from stdin."""
    from pydantic import ValidationError

    from healthapp.accounts.schemas import UserCreate
    from healthapp.domain.roles import Role
    from healthapp.problems import Problem

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user_in = UserCreate(
            username=username,
            email=email or f"{username}@localhost.localdomain",
            password=password,
            role=Role.ADMIN,
        )
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) + ": " + e["msg"] for e in error.errors())
        raise click.ClickException(f"invalid admin account: {fields}") from None
    settings = _settings_or_exit()
    with ExitStack() as stack:
        database_url = _database_url(stack, settings)
        from healthapp.migrate import upgrade

        upgrade(database_url)
        settings.DATABASE_URL = database_url
        from healthapp.accounts import service
        from healthapp.app import create_app
        from healthapp.extensions import db

        app = create_app(settings)
        with app.app_context():
            try:
                user = service.create(session=db.session, user_in=user_in)
            except Problem as problem:
                raise click.ClickException(problem.detail) from None
            click.echo(f"created admin {user.username} ({user.id})")
            db.engine.dispose()


@main.command()
def migrate() -> None:
    """Apply the database migrations (production runs this before starting the APIs)."""
    settings = _settings_or_exit()
    with ExitStack() as stack:
        from healthapp.migrate import upgrade

        upgrade(_database_url(stack, settings))
    click.echo("database schema is up to date")


if __name__ == "__main__":
    main()
