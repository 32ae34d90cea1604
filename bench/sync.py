#!/usr/bin/env python3
"""Sync benchmark (SPEC §9): full rebuild rate, incremental cost at two sizes, Redis memory
per check-up, and freshness from upload to a visible read.

    python bench/sync.py [--checkups 100] [--small-users 1000] [--large-users 10000]
                         [--changed 1000] [--repeat 3] [--interval 5] [--samples 5]
                         [--port 18120]
                         [--database-url URL] [--redis-url URL] [--skip-freshness]

What it does, in one run:

1. Creates a throwaway database on the server of ``--database-url`` (default
   ``DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``) and uses an
   embedded Redis in a temporary folder (or logical database 14 of ``--redis-url``, which it
   flushes). Seeds ``--small-users`` patients of ``--checkups`` check-ups (100k by default)
   with set-based SQL, stored as bulk uploads would store them (sessions of 10).
2. Full rebuild: check-ups/s (target >= 50,000/s). Then ``--changed`` random users get one
   new check-up each and an incremental pass is timed (median of ``--repeat``).
3. Grows the data to ``--large-users`` patients (1M check-ups by default) and repeats both:
   the two incremental passes should be within 20% of each other.
4. Redis bytes per stored check-up (``MEMORY USAGE`` of every report key; target <= 250).
5. Freshness: starts the Core API and the Reports API under gunicorn (``--port``,
   ``--port`` + 1) and the Celery worker with beat (``SYNC_INTERVAL_SECONDS=--interval``),
   uploads ``--samples`` sessions of 10 check-ups through ``POST /api/v1/checkups/`` and
   times each until ``GET /api/v1/users/{username}/`` shows it (target: interval + 2 s).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reportdata

REDIS_BENCH_DB = 14


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sync rates, incremental cost at two sizes, memory and freshness (§9).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkups", type=int, default=100, help="check-ups per patient")
    parser.add_argument("--small-users", type=int, default=1_000, help="patients, first size")
    parser.add_argument("--large-users", type=int, default=10_000, help="patients, second size")
    parser.add_argument("--changed", type=int, default=1_000, help="users changed per pass")
    parser.add_argument("--repeat", type=int, default=3, help="incremental passes (median)")
    parser.add_argument("--batch-size", type=int, default=500, help="users per sync batch")
    parser.add_argument("--interval", type=int, default=5, help="SYNC_INTERVAL_SECONDS")
    parser.add_argument("--samples", type=int, default=5, help="freshness uploads")
    parser.add_argument(
        "--port", type=int, default=18120, help="Core API port (Reports API: port + 1)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or reportdata.DEFAULT_SERVER,
        help="server to run on (a throwaway database is created there)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help=f"Redis server to use (its logical database {REDIS_BENCH_DB}, flushed);"
        " default: an embedded Redis",
    )
    parser.add_argument("--skip-freshness", action="store_true", help="skip step 5")
    args = parser.parse_args(argv)
    if not 18100 <= args.port <= 18198:
        parser.error("--port must be within 18100-18198")
    if args.changed > args.small_users:
        parser.error("--changed must not exceed --small-users")
    return args


def bench_redis_url(url: str) -> str:
    import redis

    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={REDIS_BENCH_DB}"
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{REDIS_BENCH_DB}"


def memory_per_checkup(client: Any) -> tuple[int, int, float]:
    """``(bytes, check-ups, bytes per check-up)`` of the current generation's reports."""
    from healthapp.domain.report_keys import generation_prefix
    from healthapp.sync.writer import current_generation

    generation = current_generation(redis_client=client)
    assert generation is not None
    keys = list(client.scan_iter(match=generation_prefix(generation) + "*", count=1000))
    total = 0
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.memory_usage(key, samples=0)
        total += sum(value or 0 for value in pipe.execute())
    checkups = 0
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        batch = [k for k in keys[start : start + 1000] if k.endswith(b"}")]
        for key in batch:
            pipe.hget(key, "m")
        import orjson

        checkups += sum(orjson.loads(raw)["count"] for raw in pipe.execute() if raw)
    return total, checkups, total / max(checkups, 1)


def timed_incremental(
    url: str, client: Any, *, changed: int, batch_size: int, repeat: int
) -> float:
    """The median duration of ``repeat`` passes, each after ``changed`` users changed."""
    import statistics

    from healthapp.database import make_engine
    from healthapp.sync.passes import run_incremental_sync

    engine = make_engine(url)
    durations = []
    try:
        for attempt in range(repeat):
            reportdata.change_users(url, count=changed, seed_value=attempt)
            stats = run_incremental_sync(engine=engine, redis_client=client, batch_size=batch_size)
            assert stats.documents_written == changed, stats
            durations.append(stats.duration_seconds)
    finally:
        engine.dispose()
    return statistics.median(durations)


def timed_full(url: str, client: Any, *, batch_size: int) -> tuple[float, int]:
    from healthapp.database import make_engine
    from healthapp.sync.passes import full_rebuild

    engine = make_engine(url)
    try:
        stats = full_rebuild(engine=engine, redis_client=client, batch_size=batch_size)
    finally:
        engine.dispose()
    return stats.duration_seconds, stats.checkups_written


def freshness(
    url: str, redis_url: str, *, port: int, interval: int, samples: int, folder: Path
) -> list[float]:
    """Seconds from each upload's response to the Reports API showing it."""
    import httpx
    import psycopg

    from healthapp.auth.passwords import hash_password

    password = "bench-" + uuid.uuid4().hex
    operator = "bench-operator"
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, role, password_hash)"
            " VALUES (gen_random_uuid(), %s, 'operator@example.com', 'operator', %s)",
            (operator, hash_password(password)),
        )
        patient_id, patient = conn.execute(
            "SELECT id::text, username FROM users WHERE role = 'patient' ORDER BY username LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        machine_id = conn.execute("SELECT id::text FROM machines LIMIT 1").fetchone()[0]  # type: ignore[index]
    env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "SYNC_INTERVAL_SECONDS": str(interval)}
    with (
        reportdata.sync_worker(env, log=folder / "worker.log"),
        reportdata.serve(
            "healthapp.app:create_app()",
            port=port,
            env=env,
            workers=2,
            log=folder / "core.log",
        ) as core,
        reportdata.serve(
            "healthapp.reports.app:create_app()",
            port=port + 1,
            env=env,
            workers=2,
            log=folder / "reports.log",
        ) as reports,
    ):
        core_http = httpx.Client(base_url=f"http://{core}", timeout=30)
        token = core_http.post(
            "/api/v1/auth/token", json={"username": operator, "password": password}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        reports_http = httpx.Client(base_url=f"http://{reports}", timeout=30)
        path = f"/api/v1/users/{patient}/?limit=1"
        delays = []
        rng = random.Random(3)
        for _sample in range(samples):
            time.sleep(rng.uniform(0, interval))
            now = datetime.now(UTC)
            items = [
                {
                    "id": str(uuid.uuid4()),
                    "user_id": patient_id,
                    "machine_id": machine_id,
                    "checkup_type": "heart_rate",
                    "information": {"bpm": 60 + n},
                    "test_taken_by": "nurse 1",
                    "taken_at": (now - timedelta(seconds=10 - n)).isoformat(),
                }
                for n in range(10)
            ]
            newest = items[-1]["id"]  # the latest reading of the user's history
            response = core_http.post(
                "/api/v1/checkups/", json={"checkups": items}, headers=headers
            )
            response.raise_for_status()
            uploaded = time.monotonic()
            deadline = uploaded + interval + 30
            while time.monotonic() < deadline:
                body = reports_http.get(path, headers=headers)
                if body.status_code == 200 and body.json()["checkups"][0]["id"] == newest:
                    break
                time.sleep(0.05)
            delays.append(time.monotonic() - uploaded)
        return delays


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from contextlib import ExitStack

    from healthapp.extensions import make_redis

    with ExitStack() as stack:
        folder = Path(stack.enter_context(reportdata.temporary_folder()))
        if os.environ.get("BENCH_KEEP_LOGS"):
            folder = Path(os.environ["BENCH_KEEP_LOGS"])
            folder.mkdir(parents=True, exist_ok=True)
        url = stack.enter_context(
            reportdata.throwaway_database(args.database_url, prefix="bench_sync")
        )
        if args.redis_url:
            redis_url = bench_redis_url(args.redis_url)
        else:
            redis_url = stack.enter_context(reportdata.embedded_redis(folder / "redis"))
        client = make_redis(redis_url, timeout_seconds=120)
        client.flushdb()
        stack.callback(client.flushdb)
        per = args.checkups

        small = args.small_users * per
        print(f"seeding {args.small_users} patients x {per} = {small} check-ups", flush=True)
        reportdata.seed(url, users=args.small_users, per_user=per)
        full_small, written_small = timed_full(url, client, batch_size=args.batch_size)
        inc_small = timed_incremental(
            url, client, changed=args.changed, batch_size=args.batch_size, repeat=args.repeat
        )

        large = args.large_users * per
        print(f"growing to {args.large_users} patients x {per} = {large} check-ups", flush=True)
        reportdata.seed(
            url, users=args.large_users - args.small_users, per_user=per, first=args.small_users
        )
        full_large, written_large = timed_full(url, client, batch_size=args.batch_size)
        inc_large = timed_incremental(
            url, client, changed=args.changed, batch_size=args.batch_size, repeat=args.repeat
        )
        used, stored, per_checkup = memory_per_checkup(client)

        delays: list[float] = []
        if not args.skip_freshness:
            print("measuring freshness (Core API, Reports API, worker with beat)", flush=True)
            delays = freshness(
                url,
                redis_url,
                port=args.port,
                interval=args.interval,
                samples=args.samples,
                folder=folder,
            )

    rate_small = written_small / full_small
    rate_large = written_large / full_large
    print(
        f"data: {args.small_users} and {args.large_users} patients x {per} check-ups"
        f" ({small} and {large}); {args.changed} changed users per incremental pass;"
        f" batch {args.batch_size} users; {os.cpu_count()} cores"
    )
    print(
        f"full rebuild: {rate_small:,.0f} check-ups/s at {written_small:,} ({full_small:.2f} s);"
        f" {rate_large:,.0f} check-ups/s at {written_large:,} ({full_large:.2f} s)"
        f" (target >= 50,000/s: {'met' if min(rate_small, rate_large) >= 50_000 else 'NOT met'})"
    )
    drift = inc_large / inc_small
    print(
        f"incremental pass (median of {args.repeat}), {args.changed} changed users:"
        f" {inc_small * 1000:.0f} ms at"
        f" {small:,}, {inc_large * 1000:.0f} ms at {large:,}; ratio {drift:.2f}"
        f" (target within 20%: {'met' if abs(drift - 1) <= 0.2 else 'NOT met'})"
    )
    print(
        f"memory: {used:,} bytes for {stored:,} stored check-ups = {per_checkup:.1f} bytes"
        f" per check-up (target <= 250: {'met' if per_checkup <= 250 else 'NOT met'})"
    )
    if delays:
        limit = args.interval + 2
        print(
            f"freshness: upload to visible read over {len(delays)} uploads: mean"
            f" {sum(delays) / len(delays):.2f} s, max {max(delays):.2f} s with"
            f" SYNC_INTERVAL_SECONDS={args.interval}"
            f" (target <= {limit} s: {'met' if max(delays) <= limit else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
