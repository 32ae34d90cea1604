"""Real processes in tests: a free port, waiting until one answers, stopping one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import suppress

import httpx


def free_port(first: int = 18040, last: int = 18099) -> int:
    """A TCP port on 127.0.0.1 in ``first``-``last`` that nothing listens on now."""
    for port in range(first, last + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


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
