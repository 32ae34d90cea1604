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

The pieces: ``soak_stack`` (the database, Redis, servers and their memory), ``soak_load``
(the clients spread over processes), ``soak_uploads`` and ``soak_readers`` (the clients, on
``soak_client`` and ``soak_tally``), ``soak_checks`` and ``soak_report``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reportdata
import soak_checks
import soak_load
import soak_report
import soak_stack
from soak_client import Plan


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.minutes * 60
    setup_began = time.monotonic()
    with soak_stack.running(args) as stack:
        print(f"stack ready in {time.monotonic() - setup_began:.1f} s", flush=True)
        starts_at = time.monotonic() + 0.5
        people = stack.people
        plan = Plan(
            core=stack.core,
            reports=stack.reports,
            patients=people.patients,
            operator_token=people.operator_token,
            machine_ids=people.machine_ids,
            login_usernames=people.logins,
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
        specs = soak_load.client_specs(args)
        total = soak_load.drive(plan, specs, max(1, args.load_processes), stack.watches)
        for watch in stack.watches:
            watch.end_kib = watch.sample()

        print("traffic stopped; waiting for the sync to drain, then checking", flush=True)
        findings = soak_checks.gather(
            stack.url,
            stack.redis_url,
            stack.folder,
            operator_id=people.operator_id,
            sync_interval=args.sync_interval,
        )

    print()
    soak_report.print_settings(args, began)
    soak_report.print_routes(total)
    soak_report.print_uploads(total)
    soak_report.print_memory(stack.watches)
    checks = soak_checks.checks(total, findings, sync_interval=args.sync_interval)
    passed = soak_report.print_checks(checks, findings.logs)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
