"""What the soak checks once the traffic has stopped: the sync drained, every accepted
check-up stored exactly once and no refused one stored, every upload answer right,
``healthapp sync --verify`` clean, no 5xx or unexpected status, no traceback in the logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from soak_tally import Tally

#: The logs the stack writes (``<name>.log`` in its folder), scanned for tracebacks.
LOGS = ("core", "reports", "worker")


@dataclass(frozen=True)
class Findings:
    """What the stores, ``healthapp sync --verify`` and the logs say after the traffic."""

    #: Seconds until the report outbox was empty; ``None`` if it was not in time.
    drained: float | None
    #: Rows per uploaded check-up id in PostgreSQL.
    stored: dict[str, int]
    verify_status: int
    verify_line: str
    verify_seconds: float
    #: Per log: how many tracebacks, and the first.
    logs: dict[str, tuple[int, str]]


def gather(
    url: str, redis_url: str, folder: Path, *, operator_id: str, sync_interval: int
) -> Findings:
    """Wait for the sync to drain, then read the stored uploads, verify and scan the logs."""
    drained = wait_for_drain(url, timeout=max(60.0, 6.0 * sync_interval))
    stored = stored_uploads(url, operator_id)
    verify_status, verify_line, verify_seconds = run_verify(url, redis_url)
    logs = {name: tracebacks(folder / f"{name}.log") for name in LOGS}
    return Findings(drained, stored, verify_status, verify_line, verify_seconds, logs)


def checks(total: Tally, findings: Findings, *, sync_interval: int) -> list[tuple[str, bool]]:
    """Each check's line and whether it passed."""
    stored, drained, logs = findings.stored, findings.drained, findings.logs
    accepted, refused, unknown = total.accepted, total.refused, total.unknown
    missing = accepted - stored.keys()
    doubled = {key for key, count in stored.items() if count > 1}
    unaccepted = stored.keys() - accepted - unknown
    refused_stored = refused & stored.keys()
    errors = sum(s.errors for s in total.routes.values())
    unexpected = sum(s.unexpected for s in total.routes.values())
    return [
        (
            "sync drained: report outbox empty "
            + (f"{drained:.1f} s after the traffic stopped" if drained is not None else "NOT")
            + f" (SYNC_INTERVAL_SECONDS={sync_interval})",
            drained is not None,
        ),
        (
            f"exactly once: {len(accepted)} check-ups accepted, {len(stored)} uploaded ids in"
            f" PostgreSQL; {len(missing)} missing, {len(doubled)} stored twice,"
            f" {len(unaccepted)} stored but never accepted; {len(refused_stored)} of"
            f" {len(refused)} refused items stored; {len(unknown)} of unknown fate",
            not missing and not doubled and not unaccepted and not refused_stored,
        ),
        (
            f"upload answers: {total.wrong_answers} wrong"
            + (f" (first: {total.wrong_examples[0]})" if total.wrong_examples else ""),
            total.wrong_answers == 0,
        ),
        (
            f"healthapp sync --verify: exit {findings.verify_status} in"
            f" {findings.verify_seconds:.1f} s ({findings.verify_line})",
            findings.verify_status == 0,
        ),
        (f"5xx or no answer: {errors}", errors == 0),
        (f"unexpected statuses: {unexpected}", unexpected == 0),
        (
            "tracebacks in the logs: "
            + ", ".join(f"{name} {count}" for name, (count, _first) in logs.items()),
            all(count == 0 for count, _first in logs.values()),
        ),
    ]


def outbox_size(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM report_outbox").fetchone()
    return int(row[0]) if row else 0


def wait_for_drain(url: str, timeout: float) -> float | None:
    """Seconds until the report outbox is empty; ``None`` if it is not within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if outbox_size(url) == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def stored_uploads(url: str, operator_id: str) -> dict[str, int]:
    """How many rows each uploaded check-up id has in PostgreSQL."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id::text, count(*) FROM checkups WHERE uploaded_by = %s GROUP BY id",
            (operator_id,),
        ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def run_verify(url: str, redis_url: str) -> tuple[int, str, float]:
    """``healthapp sync --verify``: exit status, its last line, seconds."""
    exe = shutil.which("healthapp") or str(Path(sys.executable).with_name("healthapp"))
    env = {**os.environ, "HEALTHAPP_ENV": "development", "DATABASE_URL": url}
    env["REDIS_URL"] = redis_url
    started = time.monotonic()
    done = subprocess.run([exe, "sync", "--verify"], env=env, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, lines[-1] if lines else "", time.monotonic() - started


def tracebacks(log: Path) -> tuple[int, str]:
    """How many tracebacks ``log`` holds, and the end of the first."""
    text = log.read_text(errors="replace") if log.exists() else ""
    count = text.count("Traceback")
    first = ""
    if count:
        at = text.index("Traceback")
        first = text[at : at + 2500]
    return count, first
