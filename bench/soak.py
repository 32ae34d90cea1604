#!/usr/bin/env python3
"""Soak test (hardening): the whole stack under bounded mixed traffic for minutes, then the
checks that nothing was lost, stored twice or left unsynced.

    python bench/soak.py [--minutes 5] [--upload-clients 4] [--read-clients 16]
                         [--core-clients 2] [--upload-rate 1] [--read-rate 5] [--core-rate 2]
                         [--session-items 10] [--users 200] [--checkups 100]
                         [--sync-interval 5] [--workers 2] [--threads 4]
                         [--load-processes 2] [--port 18130] [--database-url URL] [--seed 1]

What it does, in one run:

1. Creates a throwaway database on the server of ``--database-url`` (default
   ``DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``) with ``--users``
   patients of ``--checkups`` check-ups each (plus a profile and a disease), an operator and
   a few patients who log in with a password; an embedded Redis in a temporary folder; and
   runs a full sync, so every patient has a report before the traffic starts.
2. Starts the Core API (``--port``) and the Reports API (``--port`` + 1) under gunicorn with
   the project's settings (``--workers`` workers of ``--threads`` threads each), and the sync
   worker with beat as ``healthapp run`` starts it (``celery -A healthapp.worker worker -B``,
   ``SYNC_INTERVAL_SECONDS=--sync-interval``). Every client shares 127.0.0.1, so the per
   address upload and login limits are raised for the run; the per-user login limit stays.
3. For ``--minutes``, drives bounded traffic. Each client is a thread (the threads spread
   over ``--load-processes`` processes) sending one request at a time, at random (Poisson)
   moments averaging its rate, never catching up in a burst when it falls behind:
   - upload clients (``--upload-rate`` sessions/s each, operator token): a new session of
     ``--session-items`` check-ups of one patient, each with a fresh client-generated id
     (expected 201, every item created); about 1 in 12 a retry of a session sent before
     (expected 200, every item a duplicate); 1 in 25 a new session sent on two connections
     at once (together: each item created once); 1 in 25 a session with one invalid item
     (expected 422 naming it, nothing stored; then sent again without it); 1 in 50 the
     same in ``?mode=batch`` (201, that item rejected); 1 in 50 a session sent before with
     one reading changed (expected 409). A session whose answer was lost (no answer, or a
     5xx) is sent again until answered, as a phone would.
   - read clients (``--read-rate`` requests/s each) on the Reports API, as the patient
     (or, 3 in 10, as the operator): the first page of a report (half the time with the
     ``If-None-Match`` of the copy it read before: 200 or 304), pages of 20 following
     ``next_cursor``, filtered pages (``checkup_type``, ``from``/``to``), pages of the list
     of all reports, and someone else's or an unknown report (expected 404).
   - core clients (``--core-rate`` requests/s each, operator token) on the Core API: a
     profile, a user, the list of users, a patient's check-ups (paged, filtered), and
     now and then a login with a password.
4. Prints, per route (API, method, route template and the kind of request), the requests,
   the error rate (5xx and requests that got no answer), the unexpected statuses (any other
   status than the one expected: a 4xx mostly), p50, p99 and the slowest; the uploads'
   outcomes; and the memory (VmRSS of the process and its children, from ``/proc``) of the
   Core API, the Reports API, the worker and Redis when the traffic started, when it
   stopped, and the highest seen (sampled every 5 s).
5. Checks, then stops everything and drops the database: the sync drains (report outbox
   empty) after the traffic stops; every check-up the server accepted is in PostgreSQL
   exactly once (the ids accepted, from 201 and duplicate answers, against ``SELECT id,
   count(*) ... GROUP BY id`` of the uploaded rows: none missing, none twice, none stored
   that was never accepted, none of the refused items stored); every upload answer said
   what it should; ``healthapp sync --verify`` exits 0; no traceback in the servers' and the
   worker's logs. Exits 1 if a check fails, any request got a 5xx or no answer, or any
   status was unexpected.

Latencies go into 2%-wide logarithmic buckets, so the load generator's memory does not grow
with the length of the run. gunicorn replaces a worker after ``max_requests`` (10,000 ±
1,000 requests), so a long run sees new worker processes: the memory lines say how many.
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest
import reportdata

OPERATOR = "soak-operator"
#: Patients who log in with a password; several, to stay under the per-user login limit.
LOGIN_USERS = 6
LOGIN_PASSWORD = "soak-" + uuid.uuid4().hex  # throwaway, never stored or printed
SEEDED_TYPES = ("blood_pressure", "heart_rate", "spo2", "body_temperature")
#: Raised per-address limits: every client of the run shares 127.0.0.1.
SHARED_ADDRESS_LIMITS = {
    "UPLOAD_RATE_LIMIT_PER_ADDRESS": "100000/minute",
    "LOGIN_RATE_LIMIT_PER_ADDRESS": "10000/minute",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The whole stack under bounded mixed traffic, then exactly-once and sync"
        " checks (hardening soak test).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the traffic runs")
    parser.add_argument("--upload-clients", type=int, default=4, help="clients uploading")
    parser.add_argument("--read-clients", type=int, default=16, help="Reports API clients")
    parser.add_argument("--core-clients", type=int, default=2, help="other Core API clients")
    parser.add_argument(
        "--upload-rate", type=float, default=1.0, help="sessions/s per upload client"
    )
    parser.add_argument("--read-rate", type=float, default=5.0, help="requests/s per read client")
    parser.add_argument("--core-rate", type=float, default=2.0, help="requests/s per core client")
    parser.add_argument("--session-items", type=int, default=10, help="check-ups per session")
    parser.add_argument("--users", type=int, default=200, help="patients with a report")
    parser.add_argument("--checkups", type=int, default=100, help="seeded check-ups per patient")
    parser.add_argument("--sync-interval", type=int, default=5, help="SYNC_INTERVAL_SECONDS")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per API")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--load-processes", type=int, default=2, help="processes the client threads spread over"
    )
    parser.add_argument(
        "--port", type=int, default=18130, help="Core API port (Reports API: port + 1)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or reportdata.DEFAULT_SERVER,
        help="server to run on (a throwaway database is created there)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic's choices")
    args = parser.parse_args(argv)
    if not 18100 <= args.port <= 18198:
        parser.error("--port must be within 18100-18198")
    if args.session_items < 2:
        parser.error("--session-items must be at least 2 (an invalid item and a valid one)")
    if args.users < 2:
        parser.error("--users must be at least 2")
    for name in ("upload_rate", "read_rate", "core_rate"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


# Measurements ----------------------------------------------------------------------------

GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)
_SMALLEST_MS = 0.01


class Histogram:
    """Latencies in milliseconds in 2%-wide logarithmic buckets: memory bounded however long
    the run, percentiles within 1%."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.buckets[int(math.log(max(ms, _SMALLEST_MS) / _SMALLEST_MS) / _LOG_GROWTH)] += 1
        self.count += 1
        self.max = max(self.max, ms)

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        if not self.count:
            return float("nan")
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(_SMALLEST_MS * GROWTH ** (index + 0.5), self.max)
        return self.max


@dataclass
class RouteStats:
    """What one route's requests got: statuses, errors, unexpected answers, latencies."""

    requests: int = 0
    errors: int = 0
    unexpected: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)

    def record(self, status: int | None, ms: float, *, expected: bool) -> None:
        self.requests += 1
        self.statuses[status or 0] += 1
        if status is None or status >= 500:
            self.errors += 1
        elif not expected:
            self.unexpected += 1
        if status is not None:
            self.latency.add(ms)

    def merge(self, other: RouteStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.unexpected += other.unexpected
        self.statuses.update(other.statuses)
        self.latency.merge(other.latency)


@dataclass
class Tally:
    """One client's (then one process's, then the run's) results."""

    routes: dict[str, RouteStats] = field(default_factory=dict)
    #: Check-up ids the server said it stored (created, or a duplicate of a stored one).
    accepted: set[str] = field(default_factory=set)
    #: Ids of invalid items the server turned away: never to be stored.
    refused: set[str] = field(default_factory=set)
    #: Ids of sessions that never got an answer: stored or not, nobody knows.
    unknown: set[str] = field(default_factory=set)
    uploads: Counter[str] = field(default_factory=Counter)
    wrong_answers: int = 0
    wrong_examples: list[str] = field(default_factory=list)
    reconnects: int = 0

    def route(self, key: str) -> RouteStats:
        if key not in self.routes:
            self.routes[key] = RouteStats()
        return self.routes[key]

    def wrong(self, message: str) -> None:
        self.wrong_answers += 1
        if len(self.wrong_examples) < 10:
            self.wrong_examples.append(message)

    def merge(self, other: Tally) -> None:
        for key, stats in other.routes.items():
            self.route(key).merge(stats)
        self.accepted |= other.accepted
        self.refused |= other.refused
        self.unknown |= other.unknown
        self.uploads.update(other.uploads)
        self.wrong_answers += other.wrong_answers
        self.wrong_examples.extend(other.wrong_examples[: 10 - len(self.wrong_examples)])
        self.reconnects += other.reconnects


# HTTP ------------------------------------------------------------------------------------

#: Seconds a connection may sit idle before it is reopened (gunicorn keeps it 5 s).
IDLE_REOPEN_SECONDS = 3.0
Answer = tuple[int, dict[str, str], bytes]


class Connection:
    """One keep-alive HTTP/1.1 connection to one API."""

    def __init__(self, base: str, tally: Tally) -> None:
        host, port = base.split(":")
        self.address = (host, int(port))
        self.tally = tally
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        """The answer; raises ``OSError`` or ``HTTPException`` when there was none.

        A kept-alive connection the server closed meanwhile (idle, or its worker replaced
        after ``max_requests``) fails before any answer: the request is sent once more on a
        new connection, as HTTP clients do, and counted as a reconnect.
        """
        if self.conn is not None and time.monotonic() - self.last_used > IDLE_REOPEN_SECONDS:
            self.close()
        reused = self.conn is not None
        try:
            return self._exchange(method, path, body, headers)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if not reused:
                raise
            self.tally.reconnects += 1
            return self._exchange(method, path, body, headers)

    def _exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(*self.address, timeout=30)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.last_used = time.monotonic()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        if response.will_close:
            self.close()
        return response.status, answer_headers, data


# Clients ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patient:
    id: str
    username: str
    token: str


@dataclass(frozen=True)
class Plan:
    """Everything a load process needs to run its clients."""

    core: str
    reports: str
    patients: list[Patient]
    operator_token: str
    machine_ids: list[str]
    login_usernames: list[str]
    session_items: int
    upload_rate: float
    read_rate: float
    core_rate: float
    starts_at: float
    stops_at: float


@dataclass
class Session:
    """One check-up session as a phone uploads it."""

    items: list[dict[str, Any]]

    @property
    def ids(self) -> list[str]:
        return [item["id"] for item in self.items]

    @property
    def body(self) -> bytes:
        return orjson.dumps({"checkups": self.items})


class Client:
    """A client sending one request at a time at random moments averaging ``rate`` per s."""

    def __init__(self, plan: Plan, rate: float, seed: int) -> None:
        self.plan = plan
        self.rate = rate
        self.rng = random.Random(seed)
        self.tally = Tally()

    def run(self) -> None:
        gap = 1 / self.rate
        next_at = self.plan.starts_at + self.rng.uniform(0, gap)
        while next_at < self.plan.stops_at:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.step()
            # Poisson arrivals; a client that fell behind does not burst to catch up.
            next_at = max(next_at + self.rng.expovariate(self.rate), time.monotonic() - gap)
        self.finish()

    def step(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once the time is up."""

    def call(
        self,
        connection: Connection,
        route: str,
        method: str,
        path: str,
        *,
        token: str,
        expect: set[int],
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer | None:
        """Send a request and record it under ``route``; the answer, or ``None``."""
        all_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        started = time.perf_counter()
        try:
            answer: Answer | None = connection.request(method, path, body, all_headers)
        except (OSError, http.client.HTTPException):
            answer = None
        ms = (time.perf_counter() - started) * 1000
        status = answer[0] if answer is not None else None
        self.tally.route(route).record(status, ms, expected=status in expect)
        return answer


UPLOAD = "core     POST /api/v1/checkups/"
UPLOAD_BATCH = "core     POST /api/v1/checkups/?mode=batch"
#: Attempts at a session whose answer was lost before its fate is called unknown.
PENDING_ATTEMPTS = 5


class UploadClient(Client):
    """A phone uploading check-up sessions: new ones, retries, and some mistakes."""

    def __init__(self, plan: Plan, rate: float, seed: int) -> None:
        super().__init__(plan, rate, seed)
        self.connection = Connection(plan.core, self.tally)
        self.twin_connection = Connection(plan.core, self.tally)
        self.sent: deque[Session] = deque(maxlen=50)
        self.pending: deque[tuple[Session, int]] = deque()

    def step(self) -> None:
        if self.pending:
            self.resend_pending()
            return
        roll = self.rng.random()
        if roll < 0.08 and self.sent:
            self.retry()
        elif roll < 0.12:
            self.twin()
        elif roll < 0.16:
            self.invalid_item(batch=False)
        elif roll < 0.18:
            self.invalid_item(batch=True)
        elif roll < 0.20 and self.sent:
            self.conflict()
        else:
            self.new(self.new_session())

    def finish(self) -> None:
        deadline = time.monotonic() + 30
        while self.pending and time.monotonic() < deadline:
            self.resend_pending()
            time.sleep(0.5)
        for session, _attempts in self.pending:
            self.tally.unknown.update(session.ids)
        self.pending.clear()
        self.connection.close()
        self.twin_connection.close()

    # Sessions

    def new_session(self) -> Session:
        patient = self.rng.choice(self.plan.patients)
        machine = self.rng.choice(self.plan.machine_ids)
        start = datetime.now(UTC) - timedelta(minutes=self.rng.uniform(1, 600))
        items = []
        for n in range(self.plan.session_items):
            kind = self.rng.choice(ingest.KINDS)
            items.append(
                {
                    "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                    "user_id": patient.id,
                    "machine_id": machine,
                    "checkup_type": kind,
                    "information": ingest.random_information(kind, self.rng),
                    "test_taken_by": f"nurse {self.rng.randint(1, 40)}",
                    "taken_at": (start + timedelta(seconds=40 * n)).strftime(
                        "%Y-%m-%dT%H:%M:%S.%fZ"
                    ),
                }
            )
        return Session(items)

    def invalid_copy(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` made invalid in one of the ways a phone gets it wrong."""
        bad = {**item}
        way = self.rng.randrange(4)
        if way == 0:
            bad.update(checkup_type="heart_rate", information={"bpm": 999})
        elif way == 1:
            bad.update(
                checkup_type="blood_pressure", information={"systolic": 90, "diastolic": 120}
            )
        elif way == 2:
            bad.update(checkup_type="heart_rate", information={"bpm": 70, "colour": "red"})
        else:
            bad["machine_id"] = str(uuid.uuid4())
        return bad

    # Actions

    def post(self, session: Session, *, expect: set[int], route: str = UPLOAD) -> Answer | None:
        path = "/api/v1/checkups/?mode=batch" if route == UPLOAD_BATCH else "/api/v1/checkups/"
        return self.call(
            self.connection,
            route,
            "POST",
            path,
            token=self.plan.operator_token,
            expect=expect,
            body=session.body,
        )

    def new(self, session: Session) -> None:
        self.tally.uploads["new sessions"] += 1
        answer = self.post(session, expect={201})
        if answer is None or answer[0] >= 500:
            self.pending.append((session, 1))
            return
        status, _headers, data = answer
        if status != 201:
            self.tally.refused.update(session.ids)
            return
        outcome = orjson.loads(data)
        if outcome != {"created": len(session.items), "duplicates": 0}:
            self.tally.wrong(f"new session answered {outcome}")
        self.accept(session)

    def accept(self, session: Session) -> None:
        self.tally.accepted.update(session.ids)
        self.tally.uploads["accepted items"] += len(session.items)
        self.sent.append(session)

    def resend_pending(self) -> None:
        session, attempts = self.pending.popleft()
        self.tally.uploads["resent after a lost answer"] += 1
        answer = self.post(session, expect={200, 201})
        if answer is None or answer[0] >= 500:
            if attempts + 1 >= PENDING_ATTEMPTS:
                self.tally.unknown.update(session.ids)
            else:
                self.pending.append((session, attempts + 1))
            return
        status, _headers, data = answer
        if status in (200, 201):
            outcome = orjson.loads(data)
            if outcome["created"] + outcome["duplicates"] != len(session.items):
                self.tally.wrong(f"resent session answered {outcome}")
            self.accept(session)
        else:
            self.tally.unknown.update(session.ids)

    def retry(self) -> None:
        """A phone that lost the answer sends the whole session again."""
        session = self.rng.choice(self.sent)
        self.tally.uploads["retries"] += 1
        answer = self.post(session, expect={200})
        if answer is None or answer[0] != 200:
            return
        outcome = orjson.loads(answer[2])
        if outcome != {"created": 0, "duplicates": len(session.items)}:
            self.tally.wrong(f"retried session answered {outcome}")

    def twin(self) -> None:
        """The same new session on two connections at once: each item stored once."""
        session = self.new_session()
        self.tally.uploads["concurrent pairs"] += 1
        other: list[Answer | None] = []
        helper = threading.Thread(
            target=lambda: other.append(
                self.call(
                    self.twin_connection,
                    UPLOAD,
                    "POST",
                    "/api/v1/checkups/",
                    token=self.plan.operator_token,
                    expect={200, 201},
                    body=session.body,
                )
            )
        )
        helper.start()
        mine = self.post(session, expect={200, 201})
        helper.join()
        answers = [mine, other[0]]
        if any(answer is None or answer[0] >= 500 for answer in answers):
            self.pending.append((session, 1))
            return
        outcomes = [orjson.loads(answer[2]) for answer in answers if answer is not None]
        n = len(session.items)
        if sum(o.get("created", 0) for o in outcomes) != n or any(
            o.get("created", 0) + o.get("duplicates", 0) != n for o in outcomes
        ):
            self.tally.wrong(f"concurrent pair answered {outcomes}")
        self.accept(session)

    def invalid_item(self, *, batch: bool) -> None:
        """A session with one invalid item: refused whole (then fixed and sent again), or in
        batch mode stored without it."""
        session = self.new_session()
        index = self.rng.randrange(len(session.items))
        bad = self.invalid_copy(session.items[index])
        with_bad = Session([*session.items[:index], bad, *session.items[index + 1 :]])
        good = Session([*session.items[:index], *session.items[index + 1 :]])
        self.tally.refused.add(bad["id"])
        if batch:
            self.tally.uploads["batch uploads with an invalid item"] += 1
            answer = self.post(with_bad, expect={201}, route=UPLOAD_BATCH)
            if answer is None or answer[0] >= 500:
                self.pending.append((good, 1))
                return
            if answer[0] != 201:
                self.tally.refused.update(good.ids)
                return
            outcome = orjson.loads(answer[2])
            wanted = (len(good.items), 0, 1)
            got = (outcome["created"], outcome["duplicates"], outcome["rejected"])
            if got != wanted or {e["loc"][1] for e in outcome["errors"]} != {index}:
                self.tally.wrong(f"batch upload with item {index} invalid answered {outcome}")
            self.accept(good)
            return
        self.tally.uploads["sessions refused for an invalid item"] += 1
        answer = self.post(with_bad, expect={422})
        if answer is not None and answer[0] == 422:
            errors = orjson.loads(answer[2]).get("errors", [])
            if not errors or {e["loc"][:2] == ["checkups", index] for e in errors} != {True}:
                self.tally.wrong(f"session with item {index} invalid answered {errors}")
        self.new(good)

    def conflict(self) -> None:
        """A session sent before, one reading changed: 409, nothing stored."""
        session = self.rng.choice(self.sent)
        index = self.rng.randrange(len(session.items))
        changed = {**session.items[index], "test_taken_by": "someone else"}
        self.tally.uploads["conflicting resends"] += 1
        answer = self.post(
            Session([*session.items[:index], changed, *session.items[index + 1 :]]),
            expect={409},
        )
        if answer is not None and answer[0] == 409:
            errors = orjson.loads(answer[2]).get("errors", [])
            if [e["loc"][:2] for e in errors] != [["checkups", index]]:
                self.tally.wrong(f"conflict at item {index} answered {errors}")


REPORT = "reports  GET /api/v1/users/{username}/"
PATIENTS_PER_READ_CLIENT = 8
REPORT_LIST = "reports  GET /api/v1/users/"


class ReadClient(Client):
    """A phone (or an operator's screen) reading reports from the Reports API."""

    def __init__(self, plan: Plan, rate: float, seed: int) -> None:
        super().__init__(plan, rate, seed)
        self.connection = Connection(plan.reports, self.tally)
        # The patients whose phones this client stands for: each reads their report again
        # and again, so a copy it holds is often still current.
        self.own = self.rng.sample(plan.patients, min(PATIENTS_PER_READ_CLIENT, len(plan.patients)))
        self.etags: dict[tuple[str, str], str] = {}
        self.list_cursor: str | None = None

    def finish(self) -> None:
        self.connection.close()

    def step(self) -> None:
        if self.rng.random() < 0.3:
            patient, token = self.rng.choice(self.plan.patients), self.plan.operator_token
        else:
            patient = self.rng.choice(self.own)
            token = patient.token
        roll = self.rng.random()
        if roll < 0.55:
            self.first_page(patient, token)
        elif roll < 0.70:
            self.cursor_pages(patient, token)
        elif roll < 0.85:
            self.filtered(patient, token)
        elif roll < 0.95:
            self.list_page()
        else:
            self.not_found(patient)

    def report(self, variant: str, path: str, token: str, **kwargs: Any) -> Answer | None:
        return self.call(self.connection, f"{REPORT} {variant}", "GET", path, token=token, **kwargs)

    def first_page(self, patient: Patient, token: str) -> None:
        path = f"/api/v1/users/{patient.username}/"
        cached = self.etags.get((patient.username, token))
        if cached is not None and self.rng.random() < 0.5:
            answer = self.report(
                "If-None-Match", path, token, expect={200, 304}, headers={"If-None-Match": cached}
            )
        else:
            answer = self.report("first page", path, token, expect={200})
        if answer is not None and answer[0] == 200 and "etag" in answer[1]:
            self.etags[(patient.username, token)] = answer[1]["etag"]

    def cursor_pages(self, patient: Patient, token: str) -> None:
        path = f"/api/v1/users/{patient.username}/?limit=20"
        for _page in range(3):
            answer = self.report("?limit=20, next_cursor", path, token, expect={200})
            if answer is None or answer[0] != 200:
                return
            cursor = orjson.loads(answer[2]).get("next_cursor")
            if not cursor:
                return
            path = f"/api/v1/users/{patient.username}/?limit=20&cursor={quote(cursor)}"

    def filtered(self, patient: Patient, token: str) -> None:
        if self.rng.random() < 0.5:
            kind = self.rng.choice(SEEDED_TYPES)
            query = f"checkup_type={kind}"
        else:
            # The last day of the seeded history, or the last hours of uploads.
            if self.rng.random() < 0.5:
                start, end = "2025-05-31T00:00:00Z", "2025-06-01T00:00:00Z"
            else:
                now = datetime.now(UTC)
                start = (now - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
                end = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            query = f"from={start}&to={end}"
        self.report("filtered", f"/api/v1/users/{patient.username}/?{query}", token, expect={200})

    def list_page(self) -> None:
        path = "/api/v1/users/?limit=20&checkups_per_user=5"
        if self.list_cursor is not None:
            path += f"&cursor={quote(self.list_cursor)}"
        answer = self.call(
            self.connection,
            f"{REPORT_LIST} ?limit=20, next_cursor",
            "GET",
            path,
            token=self.plan.operator_token,
            expect={200},
        )
        if answer is not None and answer[0] == 200:
            self.list_cursor = orjson.loads(answer[2]).get("next_cursor")

    def not_found(self, patient: Patient) -> None:
        if self.rng.random() < 0.5:
            other = self.rng.choice([p for p in self.plan.patients[:3] if p != patient])
            self.report(
                "someone else's (404)",
                f"/api/v1/users/{other.username}/",
                patient.token,
                expect={404},
            )
        else:
            self.report(
                "unknown user (404)",
                f"/api/v1/users/nobody-{self.rng.randrange(10**6)}/",
                self.plan.operator_token,
                expect={404},
            )


class CoreClient(Client):
    """An operator's screen on the Core API: users, profiles, check-up lists, logins."""

    def __init__(self, plan: Plan, rate: float, seed: int) -> None:
        super().__init__(plan, rate, seed)
        self.connection = Connection(plan.core, self.tally)
        self.logins = seed

    def finish(self) -> None:
        self.connection.close()

    def get(self, route: str, path: str) -> Answer | None:
        return self.call(
            self.connection,
            f"core     GET {route}",
            "GET",
            path,
            token=self.plan.operator_token,
            expect={200},
        )

    def step(self) -> None:
        patient = self.rng.choice(self.plan.patients)
        roll = self.rng.random()
        if roll < 0.30:
            self.get("/api/v1/users/{user_id}/profile", f"/api/v1/users/{patient.id}/profile")
        elif roll < 0.55:
            route = "/api/v1/checkups/ ?user_id=, next_cursor"
            path = f"/api/v1/checkups/?user_id={patient.id}&limit=20"
            answer = self.get(route, path)
            if answer is not None and answer[0] == 200 and self.rng.random() < 0.5:
                cursor = orjson.loads(answer[2]).get("next_cursor")
                if cursor:
                    self.get(route, f"{path}&cursor={quote(cursor)}")
        elif roll < 0.70:
            kind = self.rng.choice(ingest.KINDS)
            self.get(
                "/api/v1/checkups/ ?user_id=&checkup_type=",
                f"/api/v1/checkups/?user_id={patient.id}&checkup_type={kind}&limit=20",
            )
        elif roll < 0.85:
            self.get("/api/v1/users/{user_id}", f"/api/v1/users/{patient.id}")
        elif roll < 0.95:
            self.get("/api/v1/users/ ?username=", f"/api/v1/users/?username={patient.username}")
        else:
            self.login()

    def login(self) -> None:
        """A login, each client taking the login users in turn (5 a minute each at most)."""
        self.logins += 1
        username = self.plan.login_usernames[self.logins % len(self.plan.login_usernames)]
        body = orjson.dumps({"username": username, "password": LOGIN_PASSWORD})
        started = time.perf_counter()
        try:
            answer: Answer | None = self.connection.request(
                "POST", "/api/v1/auth/token", body, {"Content-Type": "application/json"}
            )
        except (OSError, http.client.HTTPException):
            answer = None
        ms = (time.perf_counter() - started) * 1000
        status = answer[0] if answer is not None else None
        self.tally.route("core     POST /api/v1/auth/token").record(
            status, ms, expected=status == 200
        )


def run_clients(
    plan: Plan,
    specs: list[tuple[str, int]],
    queue: multiprocessing.Queue[Tally],
) -> None:
    """One load process: its clients as threads; their merged tally into ``queue``."""
    kinds: dict[str, tuple[type[Client], float]] = {
        "upload": (UploadClient, plan.upload_rate),
        "read": (ReadClient, plan.read_rate),
        "core": (CoreClient, plan.core_rate),
    }
    clients = [kinds[kind][0](plan, kinds[kind][1], seed) for kind, seed in specs]
    threads = [threading.Thread(target=client.run) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for client in clients:
        total.merge(client.tally)
    queue.put(total)


# Processes and memory --------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class MemoryWatch:
    """VmRSS of a process and its children: at the start, the end, the highest seen."""

    name: str
    pid: int
    start_kib: int = 0
    end_kib: int = 0
    peak_kib: int = 0
    processes: int = 0
    seen: set[int] = field(default_factory=set)

    def sample(self) -> int:
        tree = reportdata.process_tree(self.pid)
        self.seen.update(tree)
        self.processes = len(tree)
        total = sum(rss_kib(pid) for pid in tree)
        self.peak_kib = max(self.peak_kib, total)
        return total


# Setup -----------------------------------------------------------------------------------


def create_people(
    url: str, *, hours: float
) -> tuple[list[Patient], str, str, list[str], list[str]]:
    """The patients with their tokens, the operator's id and token, the machines, and the
    login users (patients with a password)."""
    from healthapp.auth.passwords import hash_password

    password_hash = hash_password(LOGIN_PASSWORD)
    with psycopg.connect(url) as conn:
        operator_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO users (id, username, email, role, password_hash)"
            " VALUES (%s, %s, 'soak-operator@example.com', 'operator', '!')",
            (operator_id, OPERATOR),
        )
        logins = [f"soak-login-{n}" for n in range(LOGIN_USERS)]
        for name in logins:
            conn.execute(
                "INSERT INTO users (id, username, email, role, password_hash)"
                " VALUES (gen_random_uuid(), %s, %s, 'patient', %s)",
                (name, f"{name}@example.com", password_hash),
            )
        rows = conn.execute("SELECT id::text FROM machines ORDER BY serial_number").fetchall()
        machine_ids = [row[0] for row in rows]
    people = reportdata.subjects(url, reportdata.usernames(url, 10**9))
    people = [(uid, name) for uid, name in people if name.startswith("patient")]
    signed = reportdata.tokens(people, hours=hours)
    patients = [
        Patient(uid, name, token) for (uid, name), token in zip(people, signed, strict=True)
    ]
    [operator_token] = reportdata.tokens([(operator_id, OPERATOR)], "operator", hours=hours)
    return patients, operator_id, operator_token, machine_ids, logins


def outbox_size(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM report_outbox").fetchone()
    return int(row[0]) if row else 0


def wait_for_drain(url: str, timeout: float) -> float | None:
    """Seconds until the report outbox is empty; ``None`` if it is not within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if outbox_size(url) == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def stored_uploads(url: str, operator_id: str) -> dict[str, int]:
    """How many rows each uploaded check-up id has in PostgreSQL."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id::text, count(*) FROM checkups WHERE uploaded_by = %s GROUP BY id",
            (operator_id,),
        ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def run_verify(url: str, redis_url: str) -> tuple[int, str, float]:
    """``healthapp sync --verify``: exit status, its last line, seconds."""
    exe = shutil.which("healthapp") or str(Path(sys.executable).with_name("healthapp"))
    env = {**os.environ, "HEALTHAPP_ENV": "development", "DATABASE_URL": url}
    env["REDIS_URL"] = redis_url
    started = time.monotonic()
    done = subprocess.run([exe, "sync", "--verify"], env=env, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, lines[-1] if lines else "", time.monotonic() - started


def tracebacks(log: Path) -> tuple[int, str]:
    """How many tracebacks ``log`` holds, and the end of the first."""
    text = log.read_text(errors="replace") if log.exists() else ""
    count = text.count("Traceback")
    first = ""
    if count:
        at = text.index("Traceback")
        first = text[at : at + 2500]
    return count, first


# Report ----------------------------------------------------------------------------------


def print_routes(total: Tally) -> None:
    print(
        f"{'api      method route (kind of request)':<64} {'requests':>8} {'errors':>7}"
        f" {'unexp.':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  statuses"
    )
    for key in sorted(total.routes):
        stats = total.routes[key]
        rate = 100 * stats.errors / stats.requests if stats.requests else 0.0
        statuses = " ".join(
            f"{status or 'none'}:{count}" for status, count in sorted(stats.statuses.items())
        )
        print(
            f"{key:<64} {stats.requests:>8} {rate:>6.2f}% {stats.unexpected:>6}"
            f" {stats.latency.percentile(50):>7.1f} {stats.latency.percentile(99):>7.1f}"
            f" {stats.latency.max:>7.1f}  {statuses}"
        )
    requests = sum(s.requests for s in total.routes.values())
    errors = sum(s.errors for s in total.routes.values())
    unexpected = sum(s.unexpected for s in total.routes.values())
    print(
        f"all: {requests} requests, {errors} errors (5xx or no answer), {unexpected} unexpected"
        f" statuses; {total.reconnects} requests resent on a new connection after the server"
        " closed a kept-alive one"
    )


def mb(kib: int) -> str:
    return f"{kib / 1024:7.1f} MB"


def print_memory(watches: list[MemoryWatch]) -> None:
    print("memory (VmRSS of the process and its children, summed; shared pages count in each):")
    for watch in watches:
        growth = watch.end_kib - watch.start_kib
        print(
            f"  {watch.name:<40} start {mb(watch.start_kib)}  end {mb(watch.end_kib)}"
            f"  ({growth / 1024:+.1f} MB)  peak {mb(watch.peak_kib)}"
            f"  {watch.processes} processes now, {len(watch.seen)} seen"
        )


UPLOAD_OUTCOMES = (
    "new sessions",
    "accepted items",
    "retries",
    "concurrent pairs",
    "sessions refused for an invalid item",
    "batch uploads with an invalid item",
    "conflicting resends",
    "resent after a lost answer",
)


def print_uploads(total: Tally) -> None:
    parts = [f"{total.uploads[what]} {what}" for what in UPLOAD_OUTCOMES]
    print("uploads: " + ", ".join(parts))


# Main ------------------------------------------------------------------------------------


@contextmanager
def servers(
    url: str, redis_url: str, args: argparse.Namespace, folder: Path
) -> Iterator[tuple[str, str, list[tuple[str, int]]]]:
    """The Core API, the Reports API and the worker with beat; the two bases and the
    processes to watch (name, pid)."""
    common = {"DATABASE_URL": url, "REDIS_URL": redis_url, "GUNICORN_THREADS": str(args.threads)}
    with ExitStack() as stack:
        worker = stack.enter_context(
            reportdata.sync_worker(
                {**common, "SYNC_INTERVAL_SECONDS": str(args.sync_interval)},
                log=folder / "worker.log",
            )
        )
        core, core_process = stack.enter_context(
            reportdata.serve_process(
                "healthapp.app:create_app()",
                port=args.port,
                env={**common, **SHARED_ADDRESS_LIMITS},
                workers=args.workers,
                log=folder / "core.log",
            )
        )
        reports, reports_process = stack.enter_context(
            reportdata.serve_process(
                "healthapp.reports.app:create_app()",
                port=args.port + 1,
                env={"REDIS_URL": redis_url, "GUNICORN_THREADS": str(args.threads)},
                workers=args.workers,
                log=folder / "reports.log",
            )
        )
        # Ask all three to stop at once; each context then waits for its own to exit.
        stack.callback(stop_together, core_process, reports_process, worker)
        watched = [
            (f"Core API (gunicorn master + {args.workers} workers)", core_process.pid),
            (f"Reports API (gunicorn master + {args.workers} workers)", reports_process.pid),
            ("sync worker (celery worker -B, concurrency 1)", worker.pid),
        ]
        yield core, reports, watched


def stop_together(*processes: subprocess.Popen[bytes]) -> None:
    """SIGTERM to each process's main process, as an init system stops a service, without
    waiting for any: a Celery worker then lets its running task finish."""
    for process in processes:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)


def client_specs(args: argparse.Namespace) -> list[tuple[str, int]]:
    specs = [("upload", args.seed * 1000 + n) for n in range(args.upload_clients)]
    specs += [("read", args.seed * 1000 + 100 + n) for n in range(args.read_clients)]
    specs += [("core", args.seed * 1000 + 200 + n) for n in range(args.core_clients)]
    return specs


def drive(
    plan: Plan, specs: list[tuple[str, int]], processes: int, watches: list[MemoryWatch]
) -> Tally:
    """Run the clients until ``plan.stops_at``, sampling memory; their merged tally."""
    queue: multiprocessing.Queue[Tally] = multiprocessing.Queue()
    groups = [specs[n::processes] for n in range(processes)]
    workers = [
        multiprocessing.Process(target=run_clients, args=(plan, group, queue))
        for group in groups
        if group
    ]
    for worker in workers:
        worker.start()
    minute = plan.starts_at + 60
    while time.monotonic() < plan.stops_at:
        time.sleep(min(5.0, max(0.0, plan.stops_at - time.monotonic())))
        for watch in watches:
            watch.sample()
        if time.monotonic() >= minute:
            elapsed = (time.monotonic() - plan.starts_at) / 60
            rss = ", ".join(f"{w.name.split(' (')[0]} {w.sample() / 1024:.0f} MB" for w in watches)
            print(f"  {elapsed:.0f} min: {rss}", flush=True)
            minute += 60
    total = Tally()
    for _ in workers:
        total.merge(queue.get(timeout=180))
    for worker in workers:
        worker.join()
    return total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from healthapp.embedded import start_redis
    from healthapp.extensions import make_engine, make_redis
    from healthapp.sync.passes import full_rebuild

    seconds = args.minutes * 60
    setup_began = time.monotonic()
    with ExitStack() as stack:
        folder = Path(stack.enter_context(reportdata.temporary_folder()))
        url = stack.enter_context(reportdata.throwaway_database(args.database_url, prefix="soak"))
        redis_server = start_redis(folder / "redis")
        stack.callback(redis_server.stop)
        redis_url = redis_server.url
        print(f"seeding {args.users} patients x {args.checkups} check-ups", flush=True)
        reportdata.seed(url, users=args.users, per_user=args.checkups)
        patients, operator_id, operator_token, machine_ids, logins = create_people(
            url, hours=args.minutes / 60 + 1
        )
        engine = make_engine(url)
        client = make_redis(redis_url, timeout_seconds=60)
        full_rebuild(engine=engine, redis_client=client)
        engine.dispose()
        client.close()
        core, reports, watched = stack.enter_context(servers(url, redis_url, args, folder))
        watches = [MemoryWatch(name, pid) for name, pid in watched]
        redis_pid = getattr(redis_server.server, "pid", None)
        if redis_pid:
            watches.append(MemoryWatch("Redis (embedded)", int(redis_pid)))
        for watch in watches:
            watch.start_kib = watch.sample()
        print(f"stack ready in {time.monotonic() - setup_began:.1f} s", flush=True)
        starts_at = time.monotonic() + 0.5
        plan = Plan(
            core=core,
            reports=reports,
            patients=patients,
            operator_token=operator_token,
            machine_ids=machine_ids,
            login_usernames=logins,
            session_items=args.session_items,
            upload_rate=args.upload_rate,
            read_rate=args.read_rate,
            core_rate=args.core_rate,
            starts_at=starts_at,
            stops_at=starts_at + seconds,
        )
        began = datetime.now(UTC)
        print(
            f"traffic from {began:%H:%M:%S} UTC for {args.minutes:g} min: {args.upload_clients}"
            f" upload, {args.read_clients} read and {args.core_clients} core clients",
            flush=True,
        )
        total = drive(plan, client_specs(args), max(1, args.load_processes), watches)
        for watch in watches:
            watch.end_kib = watch.sample()

        print("traffic stopped; waiting for the sync to drain, then checking", flush=True)
        drained = wait_for_drain(url, timeout=max(60.0, 6.0 * args.sync_interval))
        stored = stored_uploads(url, operator_id)
        verify_status, verify_line, verify_seconds = run_verify(url, redis_url)
        logs = {name: tracebacks(folder / f"{name}.log") for name in ("core", "reports", "worker")}

    print()
    print(
        f"soak: {args.minutes:g} min from {began:%Y-%m-%d %H:%M:%S} UTC;"
        f" {args.upload_clients} upload clients x {args.upload_rate:g} sessions/s of"
        f" {args.session_items} check-ups, {args.read_clients} read clients x"
        f" {args.read_rate:g} req/s, {args.core_clients} core clients x {args.core_rate:g}"
        f" req/s, in {max(1, args.load_processes)} processes; {args.users} patients x"
        f" {args.checkups} seeded check-ups; {args.workers} gunicorn workers x {args.threads}"
        f" threads per API; worker with beat every {args.sync_interval} s;"
        f" {os.cpu_count()} cores"
    )
    print_routes(total)
    print_uploads(total)
    print_memory(watches)

    accepted, refused, unknown = total.accepted, total.refused, total.unknown
    missing = accepted - stored.keys()
    doubled = {key for key, count in stored.items() if count > 1}
    unaccepted = stored.keys() - accepted - unknown
    refused_stored = refused & stored.keys()
    errors = sum(s.errors for s in total.routes.values())
    unexpected = sum(s.unexpected for s in total.routes.values())
    checks: list[tuple[str, bool]] = [
        (
            "sync drained: report outbox empty "
            + (f"{drained:.1f} s after the traffic stopped" if drained is not None else "NOT")
            + f" (SYNC_INTERVAL_SECONDS={args.sync_interval})",
            drained is not None,
        ),
        (
            f"exactly once: {len(accepted)} check-ups accepted, {len(stored)} uploaded ids in"
            f" PostgreSQL; {len(missing)} missing, {len(doubled)} stored twice,"
            f" {len(unaccepted)} stored but never accepted; {len(refused_stored)} of"
            f" {len(refused)} refused items stored; {len(unknown)} of unknown fate",
            not missing and not doubled and not unaccepted and not refused_stored,
        ),
        (
            f"upload answers: {total.wrong_answers} wrong"
            + (f" (first: {total.wrong_examples[0]})" if total.wrong_examples else ""),
            total.wrong_answers == 0,
        ),
        (
            f"healthapp sync --verify: exit {verify_status} in {verify_seconds:.1f} s"
            f" ({verify_line})",
            verify_status == 0,
        ),
        (f"5xx or no answer: {errors}", errors == 0),
        (f"unexpected statuses: {unexpected}", unexpected == 0),
        (
            "tracebacks in the logs: "
            + ", ".join(f"{name} {count}" for name, (count, _first) in logs.items()),
            all(count == 0 for count, _first in logs.values()),
        ),
    ]
    print("checks:")
    for text, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    for name, (count, first) in logs.items():
        if count:
            print(f"first traceback in the {name} log:\n{first}")
    passed = all(ok for _text, ok in checks)
    print(f"soak {'passed' if passed else 'FAILED'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
