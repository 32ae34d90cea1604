"""Every test meets the suite's stores empty, whatever the test before it left there.

The tests run in file order: each ``leaves_...`` test leaves a trace behind, without asking
for any cleanup, and the test after it fails if the root fixture did not remove it.
"""

from __future__ import annotations

import uuid

import redis
from sqlalchemy import Engine, func, insert, select, text

from healthapp.models import metadata
from healthapp.outbox.models import ReportOutbox

KEY = "isolation:left-behind"


def _outbox_row(engine: Engine) -> int:
    """The id of a new outbox row, inserted and committed outside any request."""
    with engine.begin() as conn:
        statement = insert(ReportOutbox).values(user_id=uuid.uuid4(), username="someone")
        return int(conn.execute(statement.returning(ReportOutbox.id)).scalar_one())


def test_leaves_a_row_and_a_key(engine: Engine, redis_url: str) -> None:
    _outbox_row(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO machines (id, machine_type, manufacturer, serial_number)"
                " VALUES (gen_random_uuid(), 'heart_rate', 'Acme Medical', 'SN-LEFT-BEHIND')"
            )
        )
    client = redis.Redis.from_url(redis_url)
    client.set(KEY, "1")
    client.close()


def test_meets_every_table_and_the_redis_database_empty(engine: Engine, redis_url: str) -> None:
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
        }
    assert set(counts.values()) == {0}, counts
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.close()


def test_leaves_only_a_drawn_identity(engine: Engine) -> None:
    row_id = _outbox_row(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM report_outbox WHERE id = :id"), {"id": row_id})


def test_meets_the_identities_restarted(engine: Engine) -> None:
    assert _outbox_row(engine) == 1
