"""A soak client: who it is, the plan it follows, its keep-alive connection, and its pacing
(one request at a time at Poisson moments), every request recorded in its tally."""

from __future__ import annotations

import http.client
import random
import time
import uuid
from dataclasses import dataclass

from soak_tally import Tally

#: The password of the patients who log in; throwaway, never stored or printed.
LOGIN_PASSWORD = "soak-" + uuid.uuid4().hex

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
