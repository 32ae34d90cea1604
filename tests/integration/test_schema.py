"""The schema the migrations build is the one the models describe, and lists use its
indexes."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from healthapp.audit.schemas import AuditEventListQuery
from healthapp.audit.service import list_events
from healthapp.checkups.schemas import CheckupListQuery
from healthapp.checkups.service import list_checkups
from healthapp.migrate import MIGRATION_LOCK_KEY, alembic_config, upgrade
from healthapp.models import metadata
from healthapp.pagination import encode_cursor
from tests.conftest import empty_database


def test_the_migrations_build_what_the_models_describe(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def _plan_of(engine: Engine, list_page: Callable[[Session], object]) -> str:
    """The plan PostgreSQL makes for the one query ``list_page`` sends. Sequential and
    bitmap scans and sorts are priced out, so that on the small test tables the plan shows
    whether an index can give the rows in the page's order: without one, the Sort stays."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    with Session(engine) as session:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            list_page(session)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        # The one SELECT: a list that records its read inserts an event after it.
        [(statement, parameters)] = [s for s in sent if s[0].lstrip().startswith("SELECT")]
        conn = session.connection()
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        session.rollback()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"checkup_type": "spo2"},
        {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
        {
            "cursor": encode_cursor(
                [datetime(2026, 1, 15, tzinfo=UTC).isoformat(), str(uuid.UUID(int=1))]
            )
        },
    ],
    ids=["first-page", "one-type", "date-range", "next-page"],
)
def test_a_staff_list_of_every_users_checkups_reads_an_index(
    engine: Engine, filters: dict[str, str]
) -> None:
    query = CheckupListQuery.model_validate({"limit": 50, **filters})
    plan = _plan_of(
        engine, lambda session: list_checkups(session=session, query=query, user_id=None)
    )
    assert "ix_checkups_taken" in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize(
    "filters",
    [{"action": "checkup.delete"}, {"action": "checkup.delete", "from": "2026-01-01T00:00:00Z"}],
    ids=["one-action", "one-action-since"],
)
def test_the_audit_trail_of_one_action_reads_an_index(
    engine: Engine, filters: dict[str, str]
) -> None:
    query = AuditEventListQuery.model_validate({"limit": 50, **filters})
    plan = _plan_of(engine, lambda session: list_events(session=session, query=query))
    assert "ix_audit_events_action_occurred" in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.slow
def test_migrators_waiting_on_each_other_all_finish(postgres_server_url: str) -> None:
    """Two ``healthapp migrate`` processes started together (the Core API's and the
    worker's) on a database at 0003, before the migrations that build indexes
    concurrently: both exit 0."""
    with empty_database(postgres_server_url, prefix="healthapp_mig") as url:
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        name = make_url(url).database
        upgrade(url, "0003")
        code = f"from healthapp.migrate import upgrade; upgrade({url!r})"
        with psycopg.connect(libpq, autocommit=True) as holder:
            # Hold the lock until both have connected and wait for it, so that one runs
            # the migration while the other is still waiting.
            holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            migrators = [
                subprocess.Popen(
                    [sys.executable, "-c", code],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for _ in range(2)
            ]
            deadline = time.monotonic() + 30
            others = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> %s"
            while holder.execute(others, (name, holder.info.backend_pid)).fetchone() != (2,):
                assert time.monotonic() < deadline, "the migrators never connected"
                time.sleep(0.1)
            time.sleep(0.5)
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        outputs = [migrator.communicate(timeout=60)[0] for migrator in migrators]
        assert [migrator.returncode for migrator in migrators] == [0, 0], outputs
        with psycopg.connect(libpq) as conn:
            head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
            valid = conn.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_checkups_taken'::regclass"
            ).fetchall()
            assert valid == [(True,)]


def _index_state(libpq: str) -> tuple[int, bool] | None:
    with psycopg.connect(libpq) as conn:
        row = conn.execute(
            "SELECT indexrelid::oid::int, indisvalid FROM pg_index"
            " WHERE indexrelid = to_regclass('ix_checkups_taken')"
        ).fetchone()
    return (row[0], row[1]) if row else None


def test_migration_0004_keeps_a_finished_index_and_rebuilds_an_invalid_one(
    postgres_server_url: str,
) -> None:
    """A migrator killed during the concurrent build leaves either a finished index (its
    build went on without it) or an invalid one; the next migrator keeps the first and
    builds the second again."""
    create = "CREATE INDEX ix_checkups_taken ON checkups (taken_at DESC, id DESC)"
    with empty_database(postgres_server_url, prefix="healthapp_mig") as url:
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        upgrade(url, "0003")
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(create)
        finished = _index_state(libpq)
        upgrade(url, "0004")
        assert _index_state(libpq) == finished

        command.downgrade(alembic_config(url), "0003")
        assert _index_state(libpq) is None
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(create)
            # What a build that died half-way leaves behind.
            conn.execute(
                "UPDATE pg_index SET indisvalid = false"
                " WHERE indexrelid = 'ix_checkups_taken'::regclass"
            )
        invalid = _index_state(libpq)
        assert invalid is not None
        assert invalid[1] is False
        upgrade(url, "0004")
        rebuilt = _index_state(libpq)
        assert rebuilt is not None
        assert rebuilt[1] is True
        assert rebuilt[0] != invalid[0]
