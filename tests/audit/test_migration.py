"""Migration 0002: the audit table is append-only in the database itself."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from healthapp.database import make_engine
from healthapp.migrate import alembic_config
from tests.conftest import empty_database, truncate_all


def _insert_event(engine: Engine) -> uuid.UUID:
    event_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_events (id, action, subject_username)"
                " VALUES (:id, 'profile.update', 'someone')"
            ),
            {"id": event_id},
        )
    return event_id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET subject_username = 'someone-else'",
        "UPDATE audit_events SET details = '{}' WHERE false",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ],
    ids=["update", "update-of-no-row", "delete", "truncate"],
)
def test_rows_cannot_be_changed_or_removed(engine: Engine, statement: str) -> None:
    event_id = _insert_event(engine)
    with pytest.raises(DBAPIError, match="append-only") as raised, engine.begin() as conn:
        conn.execute(text(statement))
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)
    with engine.connect() as conn:
        kept = conn.execute(
            text("SELECT subject_username FROM audit_events WHERE id = :id"), {"id": event_id}
        ).scalar_one()
    assert kept == "someone"


def test_the_suite_can_still_empty_the_table(engine: Engine) -> None:
    _insert_event(engine)
    truncate_all(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 0
    # And the trigger is back on afterwards.
    _insert_event(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events"))


def test_source_id_is_unique(engine: Engine) -> None:
    insert = text(
        "INSERT INTO audit_events (id, action, source_id) VALUES (:id, 'report.read', 'entry-1')"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"id": uuid.uuid4()})
    with pytest.raises(DBAPIError, match="uq_audit_events_source_id"), engine.begin() as conn:
        conn.execute(insert, {"id": uuid.uuid4()})


def test_events_outlive_the_user_they_name(api: Any, engine: Engine) -> None:
    patient = api.user()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_events (id, action, subject_id, subject_username)"
                " VALUES (gen_random_uuid(), 'profile.update', :id, :name)"
            ),
            {"id": patient.id, "name": patient.username},
        )
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": patient.id})
        left = conn.execute(
            text("SELECT action FROM audit_events WHERE subject_id = :id ORDER BY occurred_at"),
            {"id": patient.id},
        ).scalars()
        assert list(left) == ["user.create", "profile.update"]


def test_downgrade_and_upgrade_again(postgres_server_url: str) -> None:
    from alembic import command

    with empty_database(postgres_server_url, prefix="healthapp_mig") as url:
        engine = make_engine(url, pool_size=1)
        try:
            config = alembic_config(url)
            command.upgrade(config, "head")
            assert "audit_events" in inspect(engine).get_table_names()
            command.downgrade(config, "0001")
            assert "audit_events" not in inspect(engine).get_table_names()
            with engine.connect() as conn:
                functions = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_reject_change'"
                    )
                ).scalar_one()
            assert functions == 0
            command.upgrade(config, "head")
            assert "audit_events" in inspect(engine).get_table_names()
        finally:
            engine.dispose()
