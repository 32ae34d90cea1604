#!/usr/bin/env python3
"""Ingest benchmark (SPEC §9): the HTTP bulk upload against ``psql \\copy`` of the same rows.

    python bench/ingest.py [--rows 200000] [--batch 10000] [--users 1000] [--machines 50]
                           [--rounds 3] [--workers 2] [--concurrency 1] [--port 18010]
                           [--database-url URL] [--keep-database] [--profile]

What it does, in one run:

1. Creates a throwaway database on the server of ``--database-url`` (default
   ``DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``), migrates it,
   and creates ``--users`` patients, ``--machines`` machines and one operator.
2. Generates ``--rows`` check-ups of every type for those users and machines, as
   ``--batch``-item JSON upload bodies and as one ``COPY`` text file of the same rows.
3. Starts the Core API under gunicorn (``gunicorn 'healthapp.app:create_app()'`` with the
   project's gunicorn settings, ``--workers`` workers, on ``127.0.0.1:--port``) and logs in
   as the operator.
4. ``--rounds`` times, alternately: empties the table and uploads every body over HTTP
   (``--concurrency`` requests in flight); empties the table and loads the same rows with
   ``psql \\copy`` into the same indexed table on the same server. Each phase is timed and
   every row checked in.
5. Prints each round, then the median rates, their ratio (target ≥ 0.6) and the data
   sizes; stops gunicorn and drops the database (unless ``--keep-database``).

Alternating rounds and taking medians keeps a passing load on a shared machine from
deciding the figure. ``--profile`` also uploads one batch in-process under cProfile and
prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reportdata

from healthapp.database import sqlalchemy_url

CHECKUP_COLUMNS = (
    "id, user_id, machine_id, checkup_type, information, test_taken_by, taken_at, uploaded_by"
)
OPERATOR = "bench-operator"
OPERATOR_PASSWORD = "bench-password-" + uuid.uuid4().hex  # throwaway, never stored anywhere


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="HTTP bulk upload vs psql \\copy of the same rows (SPEC §9 ingest).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=200_000, help="check-ups to load")
    parser.add_argument("--batch", type=int, default=10_000, help="check-ups per upload")
    parser.add_argument("--users", type=int, default=1_000, help="patients owning them")
    parser.add_argument("--machines", type=int, default=50, help="machines that took them")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="uploads in flight at once")
    parser.add_argument("--port", type=int, default=18010, help="port gunicorn listens on")
    parser.add_argument(
        "--rounds", type=int, default=3, help="HTTP and psql runs, alternated; medians shown"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="server to run on (a throwaway database is created there)",
    )
    parser.add_argument("--keep-database", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one upload in-process (cProfile)"
    )
    return parser.parse_args(argv)


# Database ------------------------------------------------------------------------------


def create_people(url: str, *, users: int, machines: int) -> tuple[list[str], list[str]]:
    """Patients and machines, inserted directly; and one operator who can log in."""
    from healthapp.auth.passwords import hash_password

    user_ids = [str(uuid.uuid4()) for _ in range(users)]
    machine_ids = [str(uuid.uuid4()) for _ in range(machines)]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (id, username, email, role, password_hash) FROM STDIN") as cp:
            for i, uid in enumerate(user_ids):
                cp.write_row((uid, f"patient{i}", f"patient{i}@example.com", "patient", "!"))
        with cur.copy("COPY machines (id, machine_type, serial_number) FROM STDIN") as cp:
            for i, mid in enumerate(machine_ids):
                cp.write_row((mid, "multi", f"BENCH-{i:06d}"))
        cur.execute(
            "INSERT INTO users (id, username, email, role, password_hash)"
            " VALUES (%s, %s, %s, 'operator', %s)",
            (uuid.uuid4(), OPERATOR, "operator@example.com", hash_password(OPERATOR_PASSWORD)),
        )
    return user_ids, machine_ids


# Data ----------------------------------------------------------------------------------


def random_information(kind: str, rng: random.Random) -> dict[str, Any]:
    """A plausible ``information`` for ``kind``, within the registry's bounds."""
    if kind == "blood_pressure":
        systolic = rng.randint(95, 180)
        return {
            "systolic": systolic,
            "diastolic": rng.randint(50, systolic - 10),
            "pulse": rng.randint(45, 120),
        }
    if kind == "heart_rate":
        return {"bpm": rng.randint(40, 180)}
    if kind == "spo2":
        return {"percent": round(rng.uniform(88, 100), 1), "pulse": rng.randint(45, 120)}
    if kind == "body_temperature":
        return {"celsius": round(rng.uniform(35.5, 39.5), 1)}
    if kind == "blood_glucose":
        return {"mg_dl": round(rng.uniform(60, 250), 1), "fasting": rng.random() < 0.5}
    if kind == "body_weight":
        return {"kg": round(rng.uniform(40, 140), 1)}
    if kind == "height":
        return {"cm": round(rng.uniform(140, 200), 1)}
    return {"rhythm": rng.choice(["sinus", "afib", "other"]), "heart_rate": rng.randint(45, 150)}


KINDS = (
    "blood_pressure",
    "heart_rate",
    "spo2",
    "body_temperature",
    "blood_glucose",
    "body_weight",
    "height",
    "ecg",
)


def generate(
    rows: int, user_ids: list[str], machine_ids: list[str], *, seed: int = 7
) -> list[dict[str, Any]]:
    """``rows`` valid check-ups spread over the users, machines, types and the last year."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=365)
    items = []
    for _ in range(rows):
        kind = rng.choice(KINDS)
        taken = start + timedelta(seconds=rng.randrange(365 * 24 * 3600))
        items.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "user_id": rng.choice(user_ids),
                "machine_id": rng.choice(machine_ids),
                "checkup_type": kind,
                "information": random_information(kind, rng),
                "test_taken_by": f"nurse {rng.randint(1, 40)}",
                "taken_at": taken.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return items


def upload_bodies(items: list[dict[str, Any]], batch: int) -> list[bytes]:
    return [orjson.dumps({"checkups": items[i : i + batch]}) for i in range(0, len(items), batch)]


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def write_copy_file(path: Path, items: list[dict[str, Any]], uploaded_by: str) -> None:
    """The same rows in ``COPY`` text format, as the upload would store them."""
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(
                "\t".join(
                    (
                        item["id"],
                        item["user_id"],
                        item["machine_id"],
                        item["checkup_type"],
                        _copy_text(orjson.dumps(item["information"]).decode()),
                        _copy_text(item["test_taken_by"]),
                        item["taken_at"],
                        uploaded_by,
                    )
                )
                + "\n"
            )


# The Core API under gunicorn -------------------------------------------------------------


@contextmanager
def gunicorn(url: str, *, port: int, workers: int, log: Path) -> Iterator[str]:
    """The Core API under gunicorn on ``port``; stopped (SIGTERM, then SIGKILL) afterwards."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HEALTHAPP_ENV": "development",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)  # rate limits in memory: the bench must not touch shared Redis
    exe = shutil.which("gunicorn") or str(Path(sys.executable).with_name("gunicorn"))
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [exe, "-c", "python:healthapp.gunicorn_conf", "healthapp.app:create_app()"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not become ready within 60 s")


def login(base: str) -> str:
    response = httpx.post(
        f"{base}/api/v1/auth/token",
        json={"username": OPERATOR, "password": OPERATOR_PASSWORD},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def upload_all(base: str, token: str, bodies: list[bytes], concurrency: int) -> int:
    """Upload every body; the number of check-ups the server reported created."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def upload(client: httpx.Client, body: bytes) -> int:
        response = client.post(f"{base}/api/v1/checkups/", content=body, headers=headers)
        if response.status_code not in (200, 201):
            raise SystemExit(f"upload failed: {response.status_code} {response.text[:500]}")
        created: int = response.json()["created"]
        return created

    with httpx.Client(timeout=120) as client:
        if concurrency <= 1:
            return sum(upload(client, body) for body in bodies)
        with ThreadPoolExecutor(concurrency) as pool:
            return sum(pool.map(lambda body: upload(client, body), bodies))


# psql \copy ----------------------------------------------------------------------------


def psql_copy(url: str, path: Path) -> None:
    command = f"\\copy checkups ({CHECKUP_COLUMNS}) FROM '{path}'"
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command], check=True
    )


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM checkups").fetchone()
        return int(row[0]) if row else 0


def empty_table(url: str) -> None:
    """Empty the check-ups (and the outbox the upload filled); settle dirty pages."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE checkups, report_outbox")
        conn.execute("VACUUM ANALYZE checkups")
        conn.execute("CHECKPOINT")


def operator_id(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM users WHERE username = %s", (OPERATOR,)).fetchone()
        assert row is not None
        return str(row[0])


# Profile -------------------------------------------------------------------------------


def profile_one_upload(url: str, body: bytes) -> None:
    """Upload one body in-process under cProfile and print the top functions."""
    os.environ["HEALTHAPP_ENV"] = "development"
    from healthapp.app import create_app
    from healthapp.auth import token_store
    from healthapp.auth.policy import Principal
    from healthapp.config import Development
    from healthapp.database import db
    from healthapp.domain.roles import Role
    from healthapp.sessions.service import token_issuer
    from healthapp.unit_of_work import unit_of_work

    settings = Development()
    settings.DATABASE_URL = sqlalchemy_url(url)
    settings.REDIS_URL = None
    app = create_app(settings)
    operator = Principal(id=uuid.UUID(operator_id(url)), username=OPERATOR, role=Role.OPERATOR)
    with app.app_context(), unit_of_work(db.session):
        token = token_store.start(
            session=db.session, issuer=token_issuer(), principal=operator
        ).access_token
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    profiler = cProfile.Profile()
    profiler.enable()
    response = client.post("/api/v1/checkups/", data=body, headers=headers)
    profiler.disable()
    print(f"profiled upload: {response.status_code} {response.get_data(as_text=True)[:200]}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    print(out.getvalue())


# Main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with reportdata.throwaway_database(
        args.database_url, prefix="healthapp_bench", keep=args.keep_database
    ) as url:
        user_ids, machine_ids = create_people(url, users=args.users, machines=args.machines)
        items = generate(args.rows, user_ids, machine_ids)
        bodies = upload_bodies(items, args.batch)
        body_bytes = sum(len(b) for b in bodies)
        http_rates: list[float] = []
        copy_rates: list[float] = []
        with tempfile.TemporaryDirectory(prefix="healthapp-bench-") as folder:
            copy_file = Path(folder) / "checkups.copy"
            write_copy_file(copy_file, items, operator_id(url))
            print(
                f"data: {args.rows} check-ups, {len(bodies)} uploads of {args.batch}, "
                f"JSON {body_bytes / 1e6:.1f} MB, COPY text {copy_file.stat().st_size / 1e6:.1f}"
                f" MB, {args.users} users, {args.machines} machines",
                flush=True,
            )
            with gunicorn(
                url, port=args.port, workers=args.workers, log=Path(folder) / "gunicorn.log"
            ) as base:
                token = login(base)
                for round_number in range(1, args.rounds + 1):
                    http_rates.append(args.rows / time_http(url, base, token, bodies, args))
                    copy_rates.append(args.rows / time_psql_copy(url, copy_file, args.rows))
                    print(
                        f"round {round_number}: HTTP {http_rates[-1]:,.0f} rows/s, "
                        f"psql \\copy {copy_rates[-1]:,.0f} rows/s, "
                        f"ratio {http_rates[-1] / copy_rates[-1]:.2f}",
                        flush=True,
                    )
            if args.profile:
                empty_table(url)
                profile_one_upload(url, bodies[0])

        http_rate = statistics.median(http_rates)
        copy_rate = statistics.median(copy_rates)
        ratio = http_rate / copy_rate
        print(
            f"HTTP bulk upload (gunicorn, {args.workers} workers, {args.concurrency} in "
            f"flight), median of {args.rounds}: {http_rate:,.0f} rows/s"
        )
        print(f"psql \\copy, median of {args.rounds}: {copy_rate:,.0f} rows/s")
        verdict = "met" if ratio >= 0.6 else "NOT met"
        print(f"ratio HTTP / psql \\copy: {ratio:.2f} (target >= 0.6: {verdict})")
    return 0


def time_http(url: str, base: str, token: str, bodies: list[bytes], args: Any) -> float:
    """Seconds to upload every body into the emptied table; checks every row landed."""
    empty_table(url)
    started = time.perf_counter()
    created = upload_all(base, token, bodies, args.concurrency)
    seconds = time.perf_counter() - started
    stored = count_rows(url)
    if created != args.rows or stored != args.rows:
        raise SystemExit(f"HTTP stored {stored} rows (reported {created}), not {args.rows}")
    return seconds


def time_psql_copy(url: str, copy_file: Path, rows: int) -> float:
    """Seconds for ``psql \\copy`` of the same rows into the emptied table."""
    empty_table(url)
    started = time.perf_counter()
    psql_copy(url, copy_file)
    seconds = time.perf_counter() - started
    if count_rows(url) != rows:
        raise SystemExit("psql \\copy did not store every row")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
