"""The stack under test: a throwaway database seeded with patients and synced into an
embedded Redis, the Core API, the Reports API and the sync worker, and their memory."""

from __future__ import annotations

import argparse
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import reportdata
from soak_client import LOGIN_PASSWORD, Patient

OPERATOR = "soak-operator"
#: Patients who log in with a password; several, to stay under the per-user login limit.
LOGIN_USERS = 6
#: Raised per-address limits: every client of the run shares 127.0.0.1.
SHARED_ADDRESS_LIMITS = {
    "UPLOAD_RATE_LIMIT_PER_ADDRESS": "100000/minute",
    "LOGIN_RATE_LIMIT_PER_ADDRESS": "10000/minute",
}


@dataclass(frozen=True)
class People:
    """Who takes part: the patients with their tokens, the operator, the machines, and the
    login users (patients with a password)."""

    patients: list[Patient]
    operator_id: str
    operator_token: str
    machine_ids: list[str]
    logins: list[str]


@dataclass(frozen=True)
class Stack:
    """The running stack: where its logs are, its stores, the two APIs and what to watch."""

    folder: Path
    url: str
    redis_url: str
    core: str
    reports: str
    people: People
    watches: list[MemoryWatch]


@contextmanager
def running(args: argparse.Namespace) -> Iterator[Stack]:
    """The whole stack, seeded and synced, every memory watch started; all stopped, the
    database dropped, afterwards."""
    from healthapp.database import make_engine
    from healthapp.extensions import make_redis
    from healthapp.sync.passes import full_rebuild

    with ExitStack() as stack:
        folder = Path(stack.enter_context(reportdata.temporary_folder()))
        url = stack.enter_context(reportdata.throwaway_database(args.database_url, prefix="soak"))
        redis_url = stack.enter_context(reportdata.embedded_redis(folder / "redis"))
        print(f"seeding {args.users} patients x {args.checkups} check-ups", flush=True)
        reportdata.seed(url, users=args.users, per_user=args.checkups)
        people = create_people(url, hours=args.minutes / 60 + 1)
        engine = make_engine(url)
        client = make_redis(redis_url, timeout_seconds=60)
        full_rebuild(engine=engine, redis_client=client)
        # The embedded server says its own pid: the URL alone does not tell it.
        redis_pid = int(client.info("server")["process_id"])
        engine.dispose()
        client.close()
        core, reports, watched = stack.enter_context(servers(url, redis_url, args, folder))
        watches = [MemoryWatch(name, pid) for name, pid in watched]
        watches.append(MemoryWatch("Redis (embedded)", redis_pid))
        for watch in watches:
            watch.start_kib = watch.sample()
        yield Stack(folder, url, redis_url, core, reports, people, watches)


def create_people(url: str, *, hours: float) -> People:
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
    return People(patients, operator_id, operator_token, machine_ids, logins)


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
