"""The upload clients: phones sending check-up sessions to the Core API, new ones, retries,
concurrent pairs and some mistakes, each answer checked."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ingest
import orjson
from soak_client import Answer, Client, Connection, Plan


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
