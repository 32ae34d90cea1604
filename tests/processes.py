"""Real processes in tests: a free port, waiting until one answers, stopping one, and an
API under gunicorn as production runs it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

#: The request body limit of the APIs that ``running_gunicorn`` starts.
MAX_CONTENT_LENGTH = 4 * 1024 * 1024


def free_port(first: int = 18040, last: int = 18099, *, count: int = 1) -> int:
    """A TCP port on 127.0.0.1 in ``first``-``last`` that nothing listens on now, and with
    ``count`` the ``count - 1`` ports after it too (a stack's two APIs side by side)."""
    for port in range(first, last + 2 - count):
        if all(_is_free(port + offset) for offset in range(count)):
            return port
    raise RuntimeError(f"no {count} free ports in a row in {first}-{last}")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until_answering(url: str, process: subprocess.Popen, deadline: float) -> None:
    """Poll ``url`` until it answers 200; fail if ``process`` exits or ``deadline`` passes."""
    while True:
        assert process.poll() is None, f"the process serving {url} exited early"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.2)


def stop(process: subprocess.Popen, *, group: bool = False, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL past ``timeout``.

    ``group``: the process leads its own process group (started with
    ``start_new_session=True``). SIGTERM still goes to the leader alone, as an init system
    stops a service: a Celery worker or a gunicorn arbiter then stops its children itself,
    letting a running task or request finish. A child signalled directly dies mid-task
    instead. SIGKILL, past ``timeout`` and for anything left afterwards, goes to the whole
    group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
    finally:
        if group:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


#: The Reports API's gunicorn target.
REPORTS_APP = "healthapp.reports.app:create_app()"


@contextmanager
def running_gunicorn(
    database_url: str | None,
    log_path: Path,
    *,
    app: str = "healthapp.app:create_app()",
    **settings: str,
) -> Iterator[str]:
    """``app`` (default: the Core API) under gunicorn on a free port, on ``database_url``.

    Without ``REDIS_URL`` among ``settings`` the rate limits live in the process's memory.
    """
    port = free_port()
    env = {
        **os.environ,
        "HEALTHAPP_ENV": "testing",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "MAX_CONTENT_LENGTH": str(MAX_CONTENT_LENGTH),
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    for name, value in (("DATABASE_URL", database_url), ("REDIS_URL", settings.get("REDIS_URL"))):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    exe = shutil.which("gunicorn") or str(Path(sys.executable).with_name("gunicorn"))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [exe, "-c", "python:healthapp.gunicorn_conf", app],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
            yield base
        finally:
            stop(process)


@contextmanager
def running_apis(database_url: str, redis_url: str, folder: Path) -> Iterator[tuple[str, str]]:
    """The Core API and the Reports API, each under gunicorn on a free port: their URLs."""
    with (
        running_gunicorn(database_url, folder / "core.log") as core,
        running_gunicorn(
            None, folder / "reports.log", app=REPORTS_APP, REDIS_URL=redis_url
        ) as reports,
    ):
        yield core, reports
