#!/usr/bin/env python3
"""Reads benchmark (SPEC §9): the Reports API against the same report built from PostgreSQL.

    python bench/reads.py [--users 200] [--checkups 200] [--clients 32] [--seconds 10]
                          [--workers CORES] [--threads 1] [--baseline-threads 4]
                          [--port 18110] [--database-url URL]

What it does, in one run:

1. Creates a throwaway database on the server of ``--database-url`` (default
   ``DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``) with ``--users``
   patients of ``--checkups`` check-ups each (plus a profile and a disease), and an embedded
   Redis in a temporary folder; runs a full sync into it.
2. Starts the Reports API under gunicorn as production runs it (project settings, a
   listening socket per worker, ``--workers`` workers of ``--threads`` threads, as
   ``REPORTS_THREADS``) on ``--port``, and on ``--port`` + 1 a baseline app with the same
   middleware that builds the same report from PostgreSQL on every request (the sync's own
   ``build_reports``; ``--baseline-threads`` threads per worker, as it mostly waits).
3. Drives each with ``--clients`` concurrent closed-loop clients (one process each, on a
   keep-alive connection) for ``--seconds`` (after a 2 s warm-up), every request
   ``GET /api/v1/users/{username}/`` for a random patient with that patient's token and
   ``Accept-Encoding: gzip`` (as the mobile app's HTTP stack sends), and prints req/s, p50
   and p99 of each, the throughput ratio and the Reports API's CPU time per request.
   Targets: Reports API p99 <= 25 ms, throughput >= 3x the baseline. For reference it
   also drives the Reports API from a client that accepts no gzip, and with a filtered
   page (``?checkup_type=blood_pressure``), which is assembled per request instead of
   served as the sync stored it.
4. Stops both servers, the Redis and drops the database.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reportdata

#: What the mobile app's HTTP stack sends with every request (OkHttp and URLSession alike).
MOBILE = {"Accept-Encoding": "gzip"}


def create_baseline_app() -> Any:
    """The Reports API's path answered from PostgreSQL on each request (gunicorn target)."""
    from flask import Response

    from healthapp import bootstrap
    from healthapp.auth.access import ALL_ROLES, current_principal, requires
    from healthapp.auth.keys import verifying_keys
    from healthapp.auth.revocation import Revocations
    from healthapp.config import load_settings
    from healthapp.database import make_engine, register_errorhandlers
    from healthapp.domain.report_codec import R_ID, R_TAKEN_AT, decode_chunk
    from healthapp.domain.report_render import report_body
    from healthapp.json_provider import dumps_bytes
    from healthapp.pagination import encode_cursor
    from healthapp.problems import not_found
    from healthapp.sync.sources import build_reports
    from healthapp.webapp import new_api, register_health, register_token_checks

    settings = load_settings()
    app = new_api(
        __name__, title="Reports from PostgreSQL (baseline)", api_name="baseline", settings=settings
    )
    # Tokens checked as the Reports API checks them: the public keys, revocations in Redis.
    revocations = (
        Revocations.for_settings(bootstrap.redis_client(settings), settings)
        if settings.REDIS_URL
        else None
    )
    register_token_checks(app, verifying_keys(settings), revocations=revocations)
    engine = make_engine(app.config["DATABASE_URL"], pool_size=8)
    register_errorhandlers(app)
    limit = 50

    @app.get("/api/v1/users/<username>/")
    @requires(ALL_ROLES)
    def report(username: str) -> Response:
        principal = current_principal()
        if not principal.role.sees_everyone and principal.username != username:
            raise not_found("report")
        with engine.connect() as conn:
            document = build_reports(conn=conn, usernames=[username])[username]
            conn.rollback()
        if document is None:
            raise not_found("report")
        records: list[list[Any]] = []
        for chunk in document.chunks:
            records.extend(decode_chunk(chunk))
            if len(records) > limit:
                break
        next_key = None
        if len(records) > limit:
            last = records[limit - 1]
            next_key = (last[R_TAKEN_AT], last[R_ID])
        cursor = encode_cursor(list(next_key)) if next_key else None
        return app.response_class(
            dumps_bytes(report_body(document.meta, records[:limit], cursor)),
            mimetype="application/json",
        )

    def check_postgresql() -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    register_health(app, {"postgresql": check_postgresql})
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reports API vs the same report built from PostgreSQL (SPEC §9 reads).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=200, help="patients with a report")
    parser.add_argument("--checkups", type=int, default=200, help="check-ups per patient")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per target")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers per server"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per Reports API worker (REPORTS_THREADS)"
    )
    parser.add_argument(
        "--baseline-threads",
        type=int,
        default=4,
        help="threads per baseline worker (it waits on PostgreSQL)",
    )
    parser.add_argument(
        "--port", type=int, default=18110, help="Reports API port (baseline: port + 1)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or reportdata.DEFAULT_SERVER,
        help="server to run on (a throwaway database is created there)",
    )
    args = parser.parse_args(argv)
    if not 18100 <= args.port <= 18198:
        parser.error("--port must be within 18100-18198")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from healthapp.database import make_engine
    from healthapp.extensions import make_redis
    from healthapp.sync.passes import full_rebuild

    with (
        reportdata.temporary_folder() as folder,
        reportdata.throwaway_database(args.database_url, prefix="bench_reads") as url,
        reportdata.embedded_redis(Path(folder) / "redis") as redis_url,
    ):
        print(f"seeding {args.users} patients x {args.checkups} check-ups", flush=True)
        reportdata.seed(url, users=args.users, per_user=args.checkups)
        engine = make_engine(url)
        client = make_redis(redis_url, timeout_seconds=60)
        stats = full_rebuild(engine=engine, redis_client=client)
        engine.dispose()
        print(f"synced {stats.documents_written} reports, {stats.checkups_written} check-ups")
        people = reportdata.subjects(url, reportdata.usernames(url, args.users))
        signed = reportdata.tokens(people)
        rng = random.Random(7)
        requests = [
            (f"/api/v1/users/{name}/", token)
            for (_, name), token in zip(people, signed, strict=True)
        ]
        rng.shuffle(requests)
        log_dir = Path(folder)

        results = {}
        with reportdata.serve_process(
            "healthapp.reports.app:create_app()",
            port=args.port,
            env={
                "REDIS_URL": redis_url,
                "GUNICORN_THREADS": str(args.threads),
                "GUNICORN_REUSE_PORT": "1",
            },
            workers=args.workers,
            log=log_dir / "reports.log",
        ) as (base, server):
            before = reportdata.cpu_seconds(server.pid)
            results["reports"] = reportdata.run_load(
                base, requests, clients=args.clients, seconds=args.seconds, headers=MOBILE
            )
            after = reportdata.cpu_seconds(server.pid)
            # For reference: a client that takes no gzip, and a filtered page.
            results["identity"] = reportdata.run_load(
                base, requests, clients=args.clients, seconds=args.seconds
            )
            filtered = [(f"{path}?checkup_type=blood_pressure", token) for path, token in requests]
            results["filtered"] = reportdata.run_load(
                base, filtered, clients=args.clients, seconds=args.seconds, headers=MOBILE
            )
        with reportdata.serve(
            "reads:create_baseline_app()",
            port=args.port + 1,
            env={
                "DATABASE_URL": url,
                "GUNICORN_THREADS": str(args.baseline_threads),
                "GUNICORN_REUSE_PORT": "1",
            },
            workers=args.workers,
            log=log_dir / "baseline.log",
            chdir=Path(__file__).resolve().parent,
        ) as base:
            results["baseline"] = reportdata.run_load(
                base, requests, clients=args.clients, seconds=args.seconds, headers=MOBILE
            )
        client.close()

    print(
        f"data: {args.users} users x {args.checkups} check-ups = {args.users * args.checkups}"
        f" check-ups; {args.clients} clients, {args.seconds:.0f} s per target,"
        f" {args.workers} gunicorn workers per server ({args.threads} threads each for the"
        f" Reports API, {args.baseline_threads} for the baseline), {os.cpu_count()} cores;"
        " GET /api/v1/users/{username}/ (first page, 50 check-ups)"
    )
    for name, label in (
        ("reports", "Reports API (Redis)"),
        ("baseline", "built from PostgreSQL"),
        ("identity", "Reports API, no gzip *"),
        ("filtered", "Reports API, filtered *"),
    ):
        r = results[name]
        print(
            f"{label:<24} {r.rate:8.0f} req/s  p50 {r.p50:6.1f} ms  p99 {r.percentile(99):6.1f} ms"
            f"  ({r.requests} requests, {r.errors} errors)"
        )
    print(
        "* for reference: a client that sends no Accept-Encoding (the stored page is inflated"
        " for it), and ?checkup_type=blood_pressure, a page assembled per request from the"
        " stored chunks"
    )
    reports, baseline = results["reports"], results["baseline"]
    if reports.sent:
        print(
            f"Reports API server CPU per request {(after - before) / reports.sent * 1000:.2f} ms"
            f" (gunicorn master and workers, user + system, over {reports.sent} requests)"
        )
    ratio = reports.rate / baseline.rate if baseline.rate else float("inf")
    p99 = reports.percentile(99)
    print(
        f"throughput ratio {ratio:.2f}x (target >= 3x: {'met' if ratio >= 3 else 'NOT met'});"
        f" Reports API p99 {p99:.1f} ms (target <= 25 ms: {'met' if p99 <= 25 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
