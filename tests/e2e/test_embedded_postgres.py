"""The embedded servers under the instance folder, as the command line finds them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from healthapp.embedded import start_postgres


def _postmaster(folder: Path) -> tuple[int, str]:
    """The postmaster's pid and its status line (``ready``, ``stopping``...)."""
    lines = (folder / "postmaster.pid").read_text().splitlines()
    return int(lines[0]), lines[7].strip() if len(lines) > 7 else ""


@pytest.mark.slow
def test_a_command_on_an_embedded_postgresql_that_is_shutting_down_says_so(tmp_path: Path):
    server = start_postgres(tmp_path)
    pid, status = _postmaster(tmp_path / "postgres")
    assert status == "ready"
    client = psycopg.connect(server.url)
    try:
        # A smart shutdown waits for every client to disconnect; until then the server is
        # running but takes no new connection.
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _postmaster(tmp_path / "postgres")[1] != "stopping":
            assert time.monotonic() < deadline, "the server never started to shut down"
            time.sleep(0.1)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "REDIS_URL", "HEALTHAPP_ENV"}
        }
        env["HEALTHAPP_INSTANCE_PATH"] = str(tmp_path)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "healthapp.cli",
                "create-admin",
                "first-admin",
                "--password-stdin",
            ],
            input="a-long-enough-passphrase\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        client.close()
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "embedded PostgreSQL under the instance folder is running but not accepting" in (
        done.stderr
    )
