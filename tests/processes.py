"""Real processes in tests: a free port, waiting until one answers, stopping one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

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
    """SIGTERM, then SIGKILL past ``timeout``; ``group``: its whole process group (started
    with ``start_new_session=True``)."""

    def send(sig: signal.Signals) -> None:
        if process.poll() is not None:
            return
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=timeout)
