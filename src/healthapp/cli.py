"""The ``healthapp`` command: run the stack, make the first admin, sync, seed demo data."""

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
    from healthapp.embedded import EmbeddedServerError, start_postgres

    click.echo("DATABASE_URL not set: starting embedded PostgreSQL under the instance folder")
    try:
        server = start_postgres(Path(settings.INSTANCE_PATH))
    except EmbeddedServerError as error:
        raise click.ClickException(str(error)) from None
    stack.callback(server.stop)
    return server.url


def _redis_url(stack: ExitStack, settings, *, owner: bool) -> str:  # type: ignore[no-untyped-def]
    """``REDIS_URL``, or the embedded server's under the instance folder.

    The ``owner`` (``healthapp run``) shuts the embedded server down, saving its data, when
    ``stack`` closes; other commands attach to it if it runs, and leave it running.
    """
    if settings.REDIS_URL:
        return str(settings.REDIS_URL)
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """MyHealthApp: check-up ingest on PostgreSQL, per-user reports served from Redis."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the APIs bind.")
@click.option("--core-port", default=8000, show_default=True, help="Core API port.")
@click.option("--reports-port", default=8001, show_default=True, help="Reports API port.")
@click.option("--workers", default=2, show_default=True, help="gunicorn workers per API.")
def run(host: str, core_port: int, reports_port: int, workers: int) -> None:
    """Run the Core API, the Reports API and the sync worker with beat; Ctrl-C stops all."""
    settings = _settings_or_exit()
    with ExitStack() as stack:
        database_url = _database_url(stack, settings)
        from healthapp.migrate import upgrade

        upgrade(database_url)
        click.echo("database schema is up to date")
        redis_url = _redis_url(stack, settings, owner=True)
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        # Each API's workers add up their metrics in a folder of its own (as the Procfile).
        metrics = Path(os.environ.get("METRICS_DIR") or Path(settings.INSTANCE_PATH, "metrics"))
        processes = {
            "core-api": (
                _gunicorn("healthapp.app:create_app()", host, core_port, workers),
                {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics / "core")},
            ),
            "reports-api": (
                _gunicorn("healthapp.reports.app:create_app()", host, reports_port, workers),
                {
                    **env,
                    "PROMETHEUS_MULTIPROC_DIR": str(metrics / "reports"),
                    "GUNICORN_THREADS": os.environ.get("REPORTS_THREADS", "1"),
                },
            ),
            "sync-worker": (worker_with_beat_command(settings.LOG_LEVEL), env),
        }
        _supervise(processes)


def worker_with_beat_command(loglevel: str) -> list[str]:
    """The Celery worker with beat inside it, one task at a time: the sync worker of
    ``healthapp run`` (production runs beat as a process of its own: the Procfile)."""
    return [
        *(sys.executable, "-m", "celery", "-A", "healthapp.worker", "worker", "--beat"),
        *("--scheduler", "healthapp.sync.beat.ResilientScheduler"),
        *("--concurrency", "1", "--loglevel", loglevel),
    ]


def _gunicorn(app: str, host: str, port: int, workers: int) -> list[str]:
    """gunicorn with the project's configuration (``healthapp.gunicorn_conf``)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:healthapp.gunicorn_conf",
        app,
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
    ]


def _supervise(commands: dict[str, tuple[list[str], dict[str, str]]]) -> None:
    """Run ``commands`` (each with its environment) until one exits or the user
    interrupts; then stop them all."""
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
        settings.STATEMENT_TIMEOUT_SECONDS = 0  # a deadline for requests, not for commands
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
@click.option(
    "--full", "mode", flag_value="full", help="Rebuild every report into a new generation."
)
@click.option(
    "--verify",
    "mode",
    flag_value="verify",
    help="Compare every report with PostgreSQL; exit 1 on any missing, stale or orphaned.",
)
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=None, help="Users per batch.")
def sync(mode: str | None, batch_size: int | None) -> None:
    """Run one incremental sync pass from PostgreSQL into Redis (or --full, --verify)."""
    from healthapp.problems import STORE_UNREACHABLE
    from healthapp.sync.writer import StoreLostError

    try:
        _sync(mode, batch_size)
    except StoreLostError as error:
        raise click.ClickException(str(error)) from None
    except STORE_UNREACHABLE as error:
        raise click.ClickException(
            f"a store is unreachable ({type(error).__name__}); nothing was lost, run it again"
        ) from None


def _sync(mode: str | None, batch_size: int | None) -> None:
    """What ``healthapp sync`` does, in the mode given."""
    settings = _settings_or_exit()
    with ExitStack() as stack:
        from healthapp.sync.passes import full_rebuild, run_incremental_sync
        from healthapp.sync.verify import verify

        engine, client = _stores(stack, settings)
        size = batch_size or settings.SYNC_BATCH_SIZE
        progress = stack.enter_context(_ProgressBar(mode or "incremental"))
        if mode == "verify":
            result = verify(
                engine=engine,
                redis_client=client,
                batch_size=size,
                on_total=progress.start,
                progress=progress.update,
            )
            progress.finish()
            for kind in ("missing", "stale", "orphaned"):
                for username in getattr(result, kind):
                    click.echo(f"{kind}: {username}")
            click.echo(
                f"verified {result.checked} users: {len(result.missing)} missing,"
                f" {len(result.stale)} stale, {len(result.orphaned)} orphaned"
            )
            if not result.clean:
                raise SystemExit(1)
            return
        if mode == "full":
            stats = full_rebuild(
                engine=engine,
                redis_client=client,
                batch_size=size,
                on_total=progress.start,
                progress=progress.update,
            )
            progress.finish()
            click.echo(
                f"full rebuild into generation {stats.generation}: {stats.documents_written}"
                f" reports, {stats.checkups_written} check-ups in {stats.duration_seconds:.2f} s"
            )
            progress = stack.enter_context(_ProgressBar("incremental"))
        # After a rebuild, the changes made while it ran are still in the outbox.
        stats = run_incremental_sync(
            engine=engine,
            redis_client=client,
            batch_size=size,
            on_total=progress.start,
            progress=progress.update,
        )
        progress.finish()
        if stats.skipped:
            click.echo("skipped: a full rebuild is running")
            return
        lag = f"{stats.lag_seconds:.1f} s" if stats.lag_seconds is not None else "none"
        click.echo(
            f"incremental sync: {stats.documents_written} reports written,"
            f" {stats.documents_removed} removed, {stats.entries_processed} outbox entries"
            f" in {stats.duration_seconds:.2f} s (lag {lag})"
        )


class _ProgressBar:
    """A click progress bar, shown only on a terminal and once the total is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def start(self, total: int) -> None:
        if total and sys.stdout.isatty():
            self.bar = click.progressbar(length=total, label=self.label)
            self.bar.__enter__()

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _stores(stack: ExitStack, settings: Any) -> tuple[Any, Any]:
    """An engine on the migrated database and a Redis client, closed with ``stack``."""
    from healthapp.extensions import make_engine, make_redis
    from healthapp.migrate import upgrade

    database_url = _database_url(stack, settings)
    redis_url = _redis_url(stack, settings, owner=False)
    upgrade(database_url)
    engine = make_engine(database_url, timeout_seconds=settings.STORE_TIMEOUT_SECONDS)
    stack.callback(engine.dispose)
    client = make_redis(redis_url, timeout_seconds=60)
    stack.callback(client.close)
    return engine, client


@main.group()
def audit() -> None:
    """The audit trail of who read or changed whose health data."""


@audit.command("drain")
def audit_drain() -> None:
    """Move the report reads waiting in the audit stream into PostgreSQL (as the worker does)."""
    settings = _settings_or_exit()
    with ExitStack() as stack:
        from healthapp.audit.stream import drain_read_events

        engine, client = _stores(stack, settings)
        stored = drain_read_events(client, engine, max_batches=1_000_000)
    click.echo(f"audit stream drained: {stored} events stored")


@main.command("seed-demo")
@click.option("--users", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option(
    "--checkups-per-user", type=click.IntRange(0, 100_000), default=200, show_default=True
)
@click.option(
    "--seed", "seed_value", type=int, default=1, show_default=True, help="Same seed, same data."
)
@click.option(
    "--prefix",
    default="demo",
    show_default=True,
    help="Start of every demo username and serial number (a second set needs another one).",
)
@click.option(
    "--days", type=click.IntRange(1, 36_500), default=365, show_default=True, help="History length."
)
@click.option(
    "--end",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the histories end (default: today, UTC); with --seed it fixes every timestamp.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the patients' password from standard input instead of generating one.",
)
def seed_demo(
    users: int,
    checkups_per_user: int,
    seed_value: int,
    prefix: str,
    days: int,
    end: Any,
    password_stdin: bool,
) -> None:
    """Create synthetic patients, machines and check-up histories, then sync the reports.

    Invented names, example.com emails; readings drift over time like real ones, within
    the check-up registry's bounds. Everything goes through the Core API's services.
    """
    import re
    import secrets

    from healthapp.accounts.schemas import MIN_PASSWORD_LENGTH

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,7}", prefix):
        raise click.BadParameter("1 to 8 of a-z, 0-9, _ and -", param_hint="--prefix")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise click.ClickException(
                f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
            )
    else:
        password = secrets.token_urlsafe(12)
    settings = _settings_or_exit()
    with ExitStack() as stack:
        database_url = _database_url(stack, settings)
        redis_url = _redis_url(stack, settings, owner=False)
        from healthapp import demo
        from healthapp.app import create_app
        from healthapp.extensions import db, make_redis
        from healthapp.migrate import upgrade
        from healthapp.sync import passes as sync_service

        upgrade(database_url)
        settings.DATABASE_URL = database_url
        settings.STATEMENT_TIMEOUT_SECONDS = 0  # a large demo's statements may run long
        app = create_app(settings)
        with app.app_context():
            if _prefix_taken(db.session, prefix):
                raise click.ClickException(
                    f"demo users named {prefix}.* exist already; choose another --prefix"
                )
            progress = stack.enter_context(_ProgressBar("seeding"))
            progress.start(users * checkups_per_user)
            result = demo.seed(
                session=db.session,
                users=users,
                checkups_per_user=checkups_per_user,
                password=password,
                seed_value=seed_value,
                prefix=prefix,
                end=end.date() if end is not None else None,
                days=days,
                max_bulk_items=int(settings.MAX_BULK_ITEMS),
                progress=progress.update,
            )
            progress.finish()
            engine = db.engine
            click.echo(
                f"seeded {result.users} patients, {result.machines} machines,"
                f" {result.diseases} diseases, {result.checkups} check-ups"
            )
            client = make_redis(redis_url, timeout_seconds=60)
            stack.callback(client.close)
            progress = stack.enter_context(_ProgressBar("sync"))
            stats = sync_service.run_incremental_sync(
                engine=engine,
                redis_client=client,
                batch_size=settings.SYNC_BATCH_SIZE,
                on_total=progress.start,
                progress=progress.update,
            )
            progress.finish()
            click.echo(f"synced {stats.documents_written} reports")
            engine.dispose()
        if result.usernames:
            click.echo(f"patients: {result.usernames[0]} … {result.usernames[-1]}")
        if not password_stdin:
            click.echo(f"every demo patient's password (shown once): {password}")


def _prefix_taken(session: Any, prefix: str) -> bool:
    from sqlalchemy import text

    pattern = prefix.replace("_", r"\_") + ".%"
    found = session.execute(
        text("SELECT 1 FROM users WHERE username LIKE :p LIMIT 1"), {"p": pattern}
    ).first()
    session.rollback()
    return found is not None


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
