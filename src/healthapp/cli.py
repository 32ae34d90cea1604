"""The ``healthapp`` command: run the stack, make the first admin, sync, seed demo data."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from healthapp import bootstrap, supervisor
from healthapp.config import Base, ConfigurationError, load_settings, parse_bind
from healthapp.progress import ProgressBar

if TYPE_CHECKING:
    import redis
    from sqlalchemy import Engine


def _settings_or_exit() -> Base:
    try:
        return load_settings()
    except ConfigurationError as error:
        raise click.ClickException(str(error)) from None


def _database_url(stack: ExitStack, settings: Base) -> str:
    """The URL of a database migrated to head: ``DATABASE_URL``'s, or the embedded server's
    (started for as long as ``stack`` lives)."""
    from healthapp.embedded import EmbeddedServerError
    from healthapp.migrate import upgrade

    try:
        url = supervisor.database_url(stack, settings)
    except EmbeddedServerError as error:
        raise click.ClickException(str(error)) from None
    upgrade(url)
    return url


def _stores(stack: ExitStack, settings: Base) -> tuple[Engine, redis.Redis]:
    """An engine on the migrated database and a Redis client, closed with ``stack``."""
    settings = settings.model_copy(
        update={
            "DATABASE_URL": _database_url(stack, settings),
            "REDIS_URL": supervisor.redis_url(stack, settings, owner=False),
        }
    )
    engine = bootstrap.engine(settings)
    stack.callback(engine.dispose)
    client = bootstrap.redis_client(settings, timeout_seconds=60)
    stack.callback(client.close)
    return engine, client


def _bind_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A ``host:port`` option, checked as ``METRICS_BIND`` is."""
    if value:
        try:
            parse_bind(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value or None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """MyHealthApp: check-up ingest on PostgreSQL, per-user reports served from Redis."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the APIs bind.")
@click.option("--core-port", default=8000, show_default=True, help="Core API port.")
@click.option("--reports-port", default=8001, show_default=True, help="Reports API port.")
@click.option("--workers", default=2, show_default=True, help="gunicorn workers per API.")
@click.option(
    "--core-metrics-bind",
    envvar="CORE_METRICS_BIND",
    callback=_bind_option,
    metavar="HOST:PORT",
    help="Serve the Core API's metrics on this address only (METRICS_BIND of the Core API).",
)
@click.option(
    "--reports-metrics-bind",
    envvar="REPORTS_METRICS_BIND",
    callback=_bind_option,
    metavar="HOST:PORT",
    help="Serve the Reports API's metrics on this address only.",
)
def run(
    host: str,
    core_port: int,
    reports_port: int,
    workers: int,
    core_metrics_bind: str | None,
    reports_metrics_bind: str | None,
) -> None:
    """Run the Core API, the Reports API and the sync worker with beat; Ctrl-C stops all.

    The metrics are served as METRICS_TOKEN and the two metrics binds say; with none of
    them, not at all.
    """
    settings = _settings_or_exit()
    if settings.METRICS_BIND:
        raise click.UsageError(
            "METRICS_BIND names one listener and this starts two APIs: give each its own"
            " with --core-metrics-bind and --reports-metrics-bind"
            " (CORE_METRICS_BIND, REPORTS_METRICS_BIND)"
        )
    if core_metrics_bind and core_metrics_bind == reports_metrics_bind:
        raise click.UsageError("the two APIs need different metrics binds")
    with ExitStack() as stack:
        database_url = _database_url(stack, settings)
        click.echo("database schema is up to date")
        commands = supervisor.stack_commands(
            settings,
            database_url=database_url,
            redis_url=supervisor.redis_url(stack, settings, owner=True),
            host=host,
            core_port=core_port,
            reports_port=reports_port,
            workers=workers,
            core_metrics_bind=core_metrics_bind,
            reports_metrics_bind=reports_metrics_bind,
        )
        supervisor.supervise(commands)


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
        from healthapp.accounts import service
        from healthapp.errors import DomainError

        settings = settings.model_copy(update={"DATABASE_URL": _database_url(stack, settings)})
        engine = bootstrap.engine(settings)
        stack.callback(engine.dispose)
        with bootstrap.session_factory(engine)() as session:
            try:
                user = service.create(session=session, user_in=user_in)
            except (Problem, DomainError) as refusal:
                raise click.ClickException(refusal.detail) from None
        click.echo(f"created admin {user.username} ({user.id})")


@main.command("mfa-reset")
@click.argument("username")
def mfa_reset(username: str) -> None:
    """Remove USERNAME's authenticator and recovery codes (both lost): the user enrols again
    with the password alone, so check who asks first (docs/operations.md)."""
    settings = _settings_or_exit()
    with ExitStack() as stack:
        from healthapp.accounts import service as accounts
        from healthapp.auth.revocation import Revocations
        from healthapp.mfa import service

        engine, client = _stores(stack, settings)
        revocations = Revocations.for_settings(client, settings)
        with bootstrap.session_factory(engine)() as session:
            user = accounts.get_by_username(session=session, username=username.lower())
            if user is None:
                raise click.ClickException(f"no user is called {username}")
            removed = service.reset(session=session, user=user, revocations=revocations)
    if not removed:
        raise click.ClickException(f"{user.username} has no second factor; nothing to reset")
    click.echo(
        f"second factor of {user.username} removed; they enrol a new authenticator"
        " with POST /api/v1/auth/mfa/totp"
    )


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
    from healthapp.database import STORE_UNREACHABLE
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
        progress = stack.enter_context(ProgressBar(mode or "incremental"))
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
            if result.behind is not None:
                held, committed = result.behind
                click.echo(
                    f"behind: Redis holds sync watermark {held}, PostgreSQL committed"
                    f" {committed}: Redis lost writes; the next pass rebuilds every report"
                )
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
            progress = stack.enter_context(ProgressBar("incremental"))
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
        from healthapp import demo
        from healthapp.sync import passes as sync_service

        engine, client = _stores(stack, settings)
        with bootstrap.session_factory(engine)() as session, ProgressBar("seeding") as bar:
            try:
                result = demo.seed(
                    session=session,
                    users=users,
                    checkups_per_user=checkups_per_user,
                    password=password,
                    seed_value=seed_value,
                    prefix=prefix,
                    end=end.date() if end is not None else None,
                    days=days,
                    max_bulk_items=settings.MAX_BULK_ITEMS,
                    on_total=bar.start,
                    progress=bar.update,
                )
            except demo.PrefixTakenError:
                raise click.ClickException(
                    f"demo users named {prefix}.* exist already; choose another --prefix"
                ) from None
        click.echo(
            f"seeded {result.users} patients, {result.machines} machines,"
            f" {result.diseases} diseases, {result.checkups} check-ups"
        )
        with ProgressBar("sync") as bar:
            stats = sync_service.run_incremental_sync(
                engine=engine,
                redis_client=client,
                batch_size=settings.SYNC_BATCH_SIZE,
                on_total=bar.start,
                progress=bar.update,
            )
        click.echo(f"synced {stats.documents_written} reports")
    if result.usernames:
        click.echo(f"patients: {result.usernames[0]} … {result.usernames[-1]}")
    if not password_stdin:
        click.echo(f"every demo patient's password (shown once): {password}")


@main.command()
def migrate() -> None:
    """Apply the database migrations (production runs this before starting the APIs)."""
    settings = _settings_or_exit()
    with ExitStack() as stack:
        _database_url(stack, settings)
    click.echo("database schema is up to date")


@main.command()
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write jwt-private-key.pem (owner-only) and jwt-public-key.pem into.",
)
def keygen(out: Path) -> None:
    """Make a new token signing key pair (Ed25519) for production or a key rotation.

    The private key goes to the Core API only (JWT_PRIVATE_KEY); the public key to the
    Reports API and, during a rotation, to both (JWT_PUBLIC_KEYS). Nothing is printed but
    the paths and the key's id.
    """
    import os

    from healthapp.auth.keys import (
        PRIVATE_KEY_FILE,
        PUBLIC_KEY_FILE,
        generate_key_pair,
        load_public_keys,
        thumbprint,
    )

    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / PRIVATE_KEY_FILE, out / PUBLIC_KEY_FILE
    private_pem, public = generate_key_pair()
    try:
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{private_path} exists; choose another directory") from None
    with os.fdopen(descriptor, "w") as private_file:
        private_file.write(private_pem)
    public_path.write_text(public)
    click.echo(f"private key: {private_path} (give it to the Core API only)")
    click.echo(f"public key:  {public_path}")
    click.echo(f"kid:         {thumbprint(load_public_keys(public)[0])}")


if __name__ == "__main__":
    main()
