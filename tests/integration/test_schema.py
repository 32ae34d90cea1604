"""The schema the migrations build is the one the models describe, and lists use its
indexes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from healthapp.checkups.schemas import CheckupListQuery
from healthapp.checkups.service import list_checkups
from healthapp.models import metadata
from healthapp.pagination import encode_cursor


def test_the_migrations_build_what_the_models_describe(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def _plan_of_list(engine: Engine, query: CheckupListQuery) -> str:
    """The plan PostgreSQL makes for the statement ``list_checkups`` sends for ``query``
    (no ``user_id``: a staff list). Sequential and bitmap scans and sorts are priced out, so
    that on the small test table the plan shows whether an index can give the rows in the
    page's order: without one, the Sort stays."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    with Session(engine) as session:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            list_checkups(session=session, query=query, user_id=None)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        [(statement, parameters)] = sent
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
    plan = _plan_of_list(engine, CheckupListQuery.model_validate({"limit": 50, **filters}))
    assert "ix_checkups_taken" in plan, plan
    assert "Sort" not in plan, plan
