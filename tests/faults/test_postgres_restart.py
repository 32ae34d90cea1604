"""PostgreSQL restarted under a stream of bulk uploads to the Core API under gunicorn.

Every answer is a whole session stored (201/200) or a 503 problem document, never a 500 or
a hang; a 503'd session is stored whole or not at all, and once the phones retry, every
check-up is stored exactly once (SPEC §6: all or nothing, idempotent retries).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from healthapp.domain.roles import Role
from tests.factories import ApiClient, checkup_session
from tests.faults.servers import OwnedPostgres, wait_until
from tests.processes import running_gunicorn

pytestmark = pytest.mark.slow

STORE_TIMEOUT_SECONDS = 2
#: No upload may take longer, outage or not (a 200-item session takes well under 1 s).
ANSWER_BOUND_SECONDS = STORE_TIMEOUT_SECONDS + 8
SESSION_SIZE = 200
CLIENTS = 4
RETRIES = 3


@dataclass
class Session:
    """One phone's check-up session: its items keep their ids across retries."""

    items: list[dict[str, Any]]
    answers: list[tuple[int, str, float]] = field(default_factory=list)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(str(item["id"])) for item in self.items]

    @property
    def stored(self) -> bool:
        return bool(self.answers) and self.answers[-1][0] in (200, 201)


@dataclass
class Stream:
    """Sessions posted by several client threads until told to stop."""

    base: str
    headers: dict[str, str]
    new_session: Any
    sessions: list[Session] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, client: httpx.Client, session: Session) -> int:
        body = orjson.dumps({"checkups": session.items})
        started = time.monotonic()
        try:
            response = client.post(
                f"{self.base}/api/v1/checkups/",
                content=body,
                headers={**self.headers, "Content-Type": "application/json"},
            )
            status, kind = response.status_code, response.headers.get("Content-Type", "")
        except httpx.HTTPError as error:  # a dropped connection is an answer too: recorded
            status, kind = 0, type(error).__name__
        with self.lock:
            session.answers.append((status, kind, time.monotonic() - started))
        return status

    def run_client(self) -> None:
        with httpx.Client(timeout=ANSWER_BOUND_SECONDS + 20) as client:
            while not self.stop.is_set():
                session = self.new_session()
                with self.lock:
                    self.sessions.append(session)
                self.post(client, session)

    def count(self, *statuses: int) -> int:
        with self.lock:
            return sum(1 for s in self.sessions for a in s.answers if a[0] in statuses)

    def refused(self) -> int:
        """Answers that stored nothing (checked below to be 503 problems)."""
        with self.lock:
            return sum(1 for s in self.sessions for a in s.answers if a[0] not in (200, 201))


def stored_per_session(engine: Engine, sessions: list[Session]) -> list[int]:
    """How many of each session's check-ups PostgreSQL holds."""
    with engine.connect() as conn:
        return [
            int(
                conn.execute(
                    text("SELECT count(*) FROM checkups WHERE id = ANY(:ids)"), {"ids": s.ids}
                ).scalar_one()
            )
            for s in sessions
        ]


def hold_uploads_mid_transaction(
    holder: psycopg.Connection[Any], database_url: str, stream: Stream
) -> list[Session]:
    """Block every client's upload after it has written its check-ups, before it commits;
    the sessions being uploaded.

    A lock on the outbox does it: an upload copies its rows into ``checkups`` first, then
    queues its users' reports. The lock is held until ``holder`` ends (with the server).
    """
    holder.execute("LOCK TABLE report_outbox IN EXCLUSIVE MODE")

    def blocked() -> int:
        with psycopg.connect(conninfo(database_url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND backend_xid IS NOT NULL"
            ).fetchone()
        return int(row[0]) if row else 0

    wait_until(lambda: blocked() == CLIENTS, timeout=30, what="every upload to wait on the lock")
    with stream.lock:
        in_flight = [session for session in stream.sessions if not session.answers]
    assert len(in_flight) == CLIENTS
    return in_flight


def conninfo(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def core_api(fault_database: str, tmp_path: Path) -> Iterator[str]:
    with running_gunicorn(
        fault_database,
        tmp_path / "core.log",
        STORE_TIMEOUT_SECONDS=str(STORE_TIMEOUT_SECONDS),
        GUNICORN_THREADS=str(CLIENTS),
    ) as base:
        yield base


def test_uploads_across_a_postgresql_restart_are_stored_exactly_once(
    owned_postgres: OwnedPostgres,
    fault_api: ApiClient,
    fault_database: str,
    fault_engine: Engine,
    core_api: str,
    tmp_path: Path,
):
    operator = fault_api.user(Role.OPERATOR)
    patients = [fault_api.user() for _ in range(CLIENTS)]
    machine = fault_api.machine()
    made = iter(range(1_000_000))

    def new_session() -> Session:
        n = next(made)
        patient = patients[n % len(patients)]
        return Session(checkup_session(patient.id, machine, SESSION_SIZE, start_minute=n * 1000))

    stream = Stream(core_api, operator.headers, new_session)
    clients = [threading.Thread(target=stream.run_client, daemon=True) for _ in range(CLIENTS)]
    holder = psycopg.connect(conninfo(fault_database))
    for thread in clients:
        thread.start()
    try:
        wait_until(lambda: stream.count(201) >= 2 * CLIENTS, timeout=30, what="uploads to flow")
        in_flight = hold_uploads_mid_transaction(holder, fault_database, stream)
        # Fast shutdown aborts the held uploads; the clients keep posting meanwhile.
        owned_postgres.stop("fast")
        wait_until(lambda: stream.refused() >= 2 * CLIENTS, timeout=30, what="outage answers")
        owned_postgres.start()
        stored_before = stream.count(201)
        wait_until(
            lambda: stream.count(201) >= stored_before + 2 * CLIENTS,
            timeout=30,
            what="uploads to flow again after the restart",
        )
    finally:
        holder.close()
        stream.stop.set()
        for thread in clients:
            thread.join(timeout=ANSWER_BOUND_SECONDS + 30)
    assert not any(thread.is_alive() for thread in clients), "a client hung"

    answers = [answer for session in stream.sessions for answer in session.answers]
    statuses = {status for status, _kind, _seconds in answers}
    assert statuses <= {201, 503}, answers
    for status, kind, seconds in answers:
        if status == 503:
            assert kind == "application/problem+json"
        assert seconds < ANSWER_BOUND_SECONDS, f"an upload took {seconds:.2f} s"

    # The uploads stopped mid-transaction were refused and left nothing behind; any other
    # refused session is stored whole (its answer was lost) or not at all.
    assert [s.answers[0][0] for s in in_flight] == [503] * len(in_flight)
    assert stored_per_session(fault_engine, in_flight) == [0] * len(in_flight)
    failed = [s for s in stream.sessions if not s.stored]
    assert set(stored_per_session(fault_engine, failed)) <= {0, SESSION_SIZE}

    # The phones retry what was refused, with the same ids: each check-up lands once.
    with httpx.Client(timeout=ANSWER_BOUND_SECONDS + 20) as client:
        for session in failed:
            for _attempt in range(RETRIES):
                if stream.post(client, session) in (200, 201):
                    break
            assert session.stored, session.answers
    assert stored_per_session(fault_engine, stream.sessions) == [SESSION_SIZE] * len(
        stream.sessions
    )
    with fault_engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM checkups")).scalar_one()
    assert total == SESSION_SIZE * len(stream.sessions)
    log = (tmp_path / "core.log").read_text(errors="replace")
    assert "unhandled error" not in log, log[-3000:]
