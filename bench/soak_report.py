"""What the soak prints at the end: the run's settings, per route the requests, errors,
unexpected statuses and latencies, the uploads' outcomes, the memory, and the checks."""

from __future__ import annotations

import argparse
import os
from datetime import datetime

from soak_stack import MemoryWatch
from soak_tally import Tally


def print_settings(args: argparse.Namespace, began: datetime) -> None:
    """The line saying what ran: traffic, data, servers and cores."""
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


def print_checks(checks: list[tuple[str, bool]], logs: dict[str, tuple[int, str]]) -> bool:
    """Each check, the first traceback of every log that has one, and the verdict."""
    print("checks:")
    for text, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    for name, (count, first) in logs.items():
        if count:
            print(f"first traceback in the {name} log:\n{first}")
    passed = all(ok for _text, ok in checks)
    print(f"soak {'passed' if passed else 'FAILED'}")
    return passed
