"""Who may read each API's Prometheus metrics, and where (SPEC §14): never anyone who asks.

Each API names its metrics pages (the Core API ``/metrics``; the Reports API ``/metrics``
and ``/metrics/sync``) and :func:`register_metrics` serves them as the settings say:

- ``METRICS_BIND`` (``host:port``): on a listener of their own, and nowhere on the API's
  (a 404 there). Under gunicorn the address is one more of its binds
  (``healthapp.gunicorn_conf``), so every worker accepts on it; a worker tells its
  requests apart by the local address of the connection (``gunicorn.socket``), which no
  header can change. Any worker answering shows the figures of all of them
  (``PROMETHEUS_MULTIPROC_DIR``), as ``/metrics`` always has.
- ``METRICS_TOKEN``: only a request bearing ``Authorization: Bearer <METRICS_TOKEN>`` is
  answered (compared in constant time); any other gets a 401 problem document with
  ``WWW-Authenticate``. With a bind as well, the listener asks for the token too.
- Neither: the pages are not served at all (404), in every environment. Production does not
  refuse to start for it: a deployment without Prometheus loses nothing, and closed is
  already the safe default.
"""

from __future__ import annotations

import hmac
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from apiflask import APIFlask
from flask import Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from healthapp.config import parse_bind
from healthapp.problems import (
    REDIS_UNREACHABLE,
    Problem,
    not_found,
    problem_response,
    store_unreachable,
)

#: A metrics page: its path and what produces its exposition text.
MetricsPages = Mapping[str, Callable[[], bytes]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_log = logging.getLogger("healthapp.metrics")


def metrics_unauthorized() -> Problem:
    """The 401 for a metrics request without the metrics token."""
    return Problem(
        401,
        "The metrics need the metrics bearer token.",
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as its bearer credentials."""
    scheme, _, supplied = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.strip().encode(), token.encode())


def register_metrics(app: APIFlask, pages: MetricsPages) -> None:
    """Serve ``pages`` as ``METRICS_BIND`` and ``METRICS_TOKEN`` say; call it last in the
    app's factory (the listener goes in front of every other WSGI layer)."""
    token: str | None = app.config.get("METRICS_TOKEN")
    bind: str | None = app.config.get("METRICS_BIND")
    if bind:
        _host, port = parse_bind(bind)
        app.wsgi_app = MetricsListener(  # type: ignore[method-assign]
            app.wsgi_app, port=port, pages=pages, token=token
        )
    elif token:
        for path, page in pages.items():
            _register_page(app, path, page, token)
    elif app.config.get("NAME") == "production":
        _log.info("metrics not served: neither METRICS_TOKEN nor METRICS_BIND is set")


def _register_page(app: APIFlask, path: str, page: Callable[[], bytes], token: str) -> None:
    def metrics_page() -> Response:
        if not bearer_matches(request.headers.get("Authorization"), token):
            raise metrics_unauthorized()
        return Response(page(), content_type=CONTENT_TYPE_LATEST)

    metrics_page.__doc__ = "Prometheus metrics (the metrics bearer token)."
    metrics_page.allowed_roles = None  # type: ignore[attr-defined]  # no user token: its own
    endpoint = "metrics" + path.removeprefix("/metrics").replace("/", "_")
    app.get(path, endpoint=endpoint)(app.doc(tags=["Health"], hide=True)(metrics_page))


class MetricsListener:
    """WSGI middleware: a request that came in on the metrics port gets the metrics (and
    nothing else); every other request goes on to the API, which serves no metrics."""

    def __init__(self, api: WSGIApp, *, port: int, pages: MetricsPages, token: str | None) -> None:
        self.api = api
        self.port = port
        self.pages = dict(pages)
        self.token = token or None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self._on_metrics_port(environ):
            return self.api(environ, start_response)
        return self._answer(environ)(environ, start_response)

    def _on_metrics_port(self, environ: dict[str, Any]) -> bool:
        """Whether the connection was accepted on the metrics port (only gunicorn says)."""
        connection = environ.get("gunicorn.socket")
        if connection is None:
            return False
        try:
            local = connection.getsockname()
        except OSError:
            return False
        return isinstance(local, tuple) and local[1] == self.port

    def _answer(self, environ: dict[str, Any]) -> Response:
        page = self.pages.get(environ.get("PATH_INFO", ""))
        if page is None:
            return problem_response(not_found())
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            problem = Problem(405, "The metrics are read with GET.", headers={"Allow": "GET, HEAD"})
            return problem_response(problem)
        if self.token is not None and not bearer_matches(
            environ.get("HTTP_AUTHORIZATION"), self.token
        ):
            return problem_response(metrics_unauthorized())
        try:
            body = page()
        except REDIS_UNREACHABLE as error:
            _log.warning("backing store unreachable: %s", type(error).__name__)
            return problem_response(store_unreachable())
        except Exception as error:
            # As the apps' handler of the unexpected: the type and the stack, no message.
            _log.error(
                "unhandled error: %s\n%s",
                type(error).__name__,
                "".join(traceback.format_tb(error.__traceback__)),
            )
            return problem_response(Problem(500, "The server could not complete the request."))
        return Response(body, content_type=CONTENT_TYPE_LATEST)  # Werkzeug drops it for HEAD
