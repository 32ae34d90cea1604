"""The clients that read: phones (and operators' screens) on the Reports API, and operators'
screens on the Core API, which now and then log in with a password."""

from __future__ import annotations

import http.client
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import ingest
import orjson
from soak_client import LOGIN_PASSWORD, Answer, Client, Connection, Patient, Plan

SEEDED_TYPES = ("blood_pressure", "heart_rate", "spo2", "body_temperature")


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
