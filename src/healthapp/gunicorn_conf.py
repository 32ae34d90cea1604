"""gunicorn settings for both APIs: ``gunicorn -c python:healthapp.gunicorn_conf APP``.

One module for both APIs, parameterised by the environment:

- ``BIND`` (default ``127.0.0.1:8000``; the Procfile and compose file give the Reports API
  ``:8001``), ``WEB_CONCURRENCY`` (workers, default 2 x cores), ``GUNICORN_THREADS``
  (default 4), ``GUNICORN_TIMEOUT`` (seconds, default 30), ``GUNICORN_MAX_REQUESTS``
  (recycle a worker after about this many requests; default 0, never),
  ``GUNICORN_REUSE_PORT`` (``1``: a listening socket per worker; default ``1`` in production,
  ``0`` elsewhere),
  ``FORWARDED_ALLOW_IPS`` (proxies whose ``X-Forwarded-Proto`` sets the scheme, default
  ``127.0.0.1``; gunicorn never takes the client address from ``X-Forwarded-For``, the
  apps do with ``TRUSTED_PROXY_COUNT``).
- ``PROMETHEUS_MULTIPROC_DIR``: metrics shared by the workers, emptied when the master
  starts. Give each API its own folder: both masters empty theirs on start.
- ``METRICS_BIND`` (``host:port``, unset by default): one more bind, on which the app
  serves its metrics and nothing else (``healthapp.metrics_access``). It must be on a port
  of its own, and a ``--bind`` on the command line, which replaces this module's binds,
  leaves it out: the master refuses to start then. Give each API its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gunicorn.config import KNOWN_SETTINGS

_production = os.environ.get("HEALTHAPP_ENV") == "production"

_metrics_bind = os.environ.get("METRICS_BIND")
bind = [os.environ.get("BIND", "127.0.0.1:8000"), *([_metrics_bind] if _metrics_bind else [])]
workers = int(os.environ.get("WEB_CONCURRENCY", str(2 * (os.cpu_count() or 1))))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Recycling a worker drops its keep-alive connections onto the others, which keep them:
# the survivors then serve every client while the new worker idles, and p99 doubles
# (bench/reads.py). So workers are not recycled unless GUNICORN_MAX_REQUESTS asks for it;
# bench/soak.py shows each process's memory flat over a run without it.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
# The app writes one structured access line per request itself.
accesslog = None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
limit_request_line = 8190
# The apps refuse a header line longer than 8,190 bytes (gunicorn's own default) with a 431
# problem document (webapp.MAX_HEADER_LINE_BYTES). gunicorn answers a line over its limit
# itself, with an HTML page it writes straight to the socket (no setting or hook changes
# that page), so its limit is set four times higher: only lines past 32 KiB, which no
# client of these APIs sends, get gunicorn's page. limit_request_fields stays at its 100:
# WSGI joins repeated fields into one, so the app could not count them as gunicorn does.
limit_request_field_size = 4 * 8192
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new
# connections evenly over them. On one shared socket the worker that wakes first accepts
# nearly every keep-alive connection: bench/reads.py found all 32 clients on one of two
# workers. Off by default outside production, where a second server started on the same
# port by mistake should fail with "address in use" instead of quietly sharing it.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "1" if _production else "0") == "1"
# gunicorn 24+ opens a control socket in the working folder; two APIs started from one
# folder would fight over its path, and nothing here uses it.
if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
    control_socket_disable = True


def on_starting(server: Any) -> None:
    """Refuse a ``METRICS_BIND`` the app could not tell apart; start every run with an empty
    metrics folder, so dead workers' figures don't linger."""
    check_metrics_bind(list(server.cfg.bind), os.environ.get("METRICS_BIND"))
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(_server: Any, worker: Any) -> None:
    """Drop an exited worker's live gauges from the shared metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def check_metrics_bind(binds: list[str], metrics_bind: str | None) -> None:
    """Raise (gunicorn then exits with the message) unless ``metrics_bind`` is among
    ``binds`` and no other of them listens on its port: the app knows its metrics listener
    by the port alone."""
    if not metrics_bind:
        return
    from healthapp.config import parse_bind

    try:
        _host, port = parse_bind(metrics_bind)
    except ValueError:
        raise RuntimeError("METRICS_BIND must be host:port, e.g. 127.0.0.1:9100") from None
    if metrics_bind not in binds:
        raise RuntimeError(
            "METRICS_BIND is set but is not among gunicorn's binds: a --bind on the command"
            " line replaces the configuration's; set BIND instead"
        )
    for other in binds:
        if other != metrics_bind and other.rpartition(":")[2] == str(port):
            raise RuntimeError(f"METRICS_BIND needs a port of its own; {other} uses {port} too")
