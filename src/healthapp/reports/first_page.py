"""The report's first page served straight from its stored rendering (SPEC §7, §9).

``GET /api/v1/users/<username>/`` without a query is what the mobile app asks for each time
it opens, and the sync stores that page already rendered. This WSGI layer in front of the
Flask app answers exactly that request when everything about it is ordinary: a token this
process has already verified, which Redis says is not revoked (asked in the round trip that
reads the page), a caller who may read the report, no ``Origin`` (CORS) and no
``If-Modified-Since``. It sends the same status, headers and body the Flask view would
(a test compares the two), counts the request in the same metrics, writes the same
access log line and hands the same read event to the audit stream, at a fraction of the
cost. A client that accepts gzip gets the page as the sync compressed it. Anything else
— a new or bad token, another user's report, a filter, a missing report, a ``HEAD``, a
header over the length limit, a store error — goes on to the Flask app, which answers it
as it answers every request. A store that did not answer is not asked twice: the Flask
app answers that request's 503 from the error this layer met.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

import redis
import structlog
from apiflask import APIFlask
from flask import request
from werkzeug.datastructures import ETags
from werkzeug.http import http_date, parse_etags

from healthapp.audit.stream import publish_report_read
from healthapp.auth import policy
from healthapp.auth.access import TOKEN_CHECKS_EXTENSION, TokenChecks
from healthapp.auth.revocation import check_command, is_revoked
from healthapp.observability import HTTP_LATENCY, HTTP_REQUESTS, REQUEST_ID, REQUEST_ID_HEADER
from healthapp.problems import REDIS_UNREACHABLE, Problem
from healthapp.reports.store import CorruptReport, ReportStore, entity_tag, first_page_body
from healthapp.request_context import Actor
from healthapp.webapp import accepts_gzip, oversized_header, security_headers

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: The Flask rule of the report view: the route label of its metrics and log lines.
ROUTE = "/api/v1/users/<username>/"
_PATH = re.compile(r"/api/v1/users/([a-z0-9._-]{3,32})/")
_DECLINING_HEADERS = ("HTTP_ORIGIN", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_RANGE", "HTTP_RANGE")
#: The environ key holding the store error this layer met, for the Flask app to answer.
STORE_ERROR = "healthapp.store_error"
#: Errors of an unreachable store, answered 503 by the Flask app's error handler.
_UNREACHABLE = REDIS_UNREACHABLE
#: What reading the page may raise that the Flask app answers (503) from the error itself.
_HANDED_ON: tuple[type[Exception], ...] = (*REDIS_UNREACHABLE, CorruptReport)


class FirstPageServer:
    """WSGI middleware: the stored first page for the ordinary request, Flask for the rest."""

    def __init__(self, app: APIFlask, store: ReportStore, *, api: str) -> None:
        self.app = app
        self.flask_app: WSGIApp = app.wsgi_app
        self.store = store
        self.api = api
        self.audit_maxlen = int(app.config["AUDIT_STREAM_MAXLEN"])
        self.access_log = structlog.get_logger("healthapp.access")
        self._log_enabled = logging.getLogger("healthapp.access").isEnabledFor
        self._headers = security_headers("/api/", hsts=app.config.get("NAME") == "production")
        self._requests = {
            status: HTTP_REQUESTS.labels(api, ROUTE, "GET", str(status)) for status in (200, 304)
        }
        self._latency = HTTP_LATENCY.labels(api, ROUTE)
        self._dates: tuple[int, str] = (0, "")
        app.before_request(_raise_store_error)

    def _date(self) -> str:
        """The ``Date`` header: the current second, formatted once a second."""
        now = int(time.time())
        second, text = self._dates
        if second != now:
            text = http_date(now)
            self._dates = (now, text)
        return text

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        answer = self._answer(environ)
        if answer is None:
            return self.flask_app(environ, start_response)
        status, headers, body, request_id = answer
        start_response("200 OK" if status == 200 else "304 NOT MODIFIED", headers)
        elapsed = time.perf_counter() - started
        self._requests[status].inc()
        self._latency.observe(elapsed)
        if self._log_enabled(logging.INFO):
            self.access_log.info(
                "request",
                request_id=request_id,
                method="GET",
                route=ROUTE,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
        return [body]

    def _answer(
        self, environ: dict[str, Any]
    ) -> tuple[int, list[tuple[str, str]], bytes, str] | None:
        """Status, headers, body and request id; ``None`` to leave the request to Flask."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return None
        path = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if path is None or any(name in environ for name in _DECLINING_HEADERS):
            return None
        checks: TokenChecks | None = self.app.extensions.get(TOKEN_CHECKS_EXTENSION)
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if checks is None or not token or (scheme != "Bearer" and scheme.lower() != "bearer"):
            return None
        if oversized_header(environ) is not None:
            return None  # the Flask app answers its 431
        claims = checks.cache.get(token, "access")
        username = path.group(1)
        if claims is None or not policy.can_read_report(claims.principal, username):
            return None
        principal = claims.principal
        try:
            # The token's revocation is checked in the same round trip as the page is read.
            stored, revocation = self.store.first_page_checking(username, check_command(claims))
        except _HANDED_ON as error:
            environ[STORE_ERROR] = error  # asking again would wait out a timeout again
            return None
        except redis.RedisError:
            return None  # the Flask view meets the same error and answers the problem
        if stored is None or is_revoked(claims, revocation):
            return None  # the Flask app answers: the report as the view reads it, or the 401
        if not policy.can_read_stored_report(principal, stored.owner):
            return None  # the Flask view answers another user's report as missing
        supplied = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex
        gzipped = stored.gzip if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING")) else None
        tag = entity_tag(stored.version, "")
        etag = f'"{tag}"'
        headers = [
            ("Date", self._date()),
            ("ETag", etag if gzipped is None else f"W/{etag}"),
            ("Vary", "Accept-Encoding"),
            (REQUEST_ID_HEADER, request_id),
            *self._headers,
        ]
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if if_none_match and _entity_tags(if_none_match).contains_weak(tag):
            return 304, headers, b"", request_id  # without the entity's headers, as Flask
        try:
            body = gzipped if gzipped is not None else first_page_body(stored, username)
        except CorruptReport as error:
            environ[STORE_ERROR] = error  # before the read is audited: none will be made
            return None
        actor = Actor(
            id=principal.id,
            username=principal.username,
            role=principal.role.value,
            request_id=request_id,
        )
        try:
            publish_report_read(
                self.store.redis,
                actor,
                username,
                request_id,
                maxlen=self.audit_maxlen,
                lean=True,
            )
        except _UNREACHABLE as error:
            environ[STORE_ERROR] = error
            return None
        except (redis.RedisError, Problem):
            return None  # the Flask view meets the same error and answers the problem
        headers += [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Last-Modified", _last_modified(stored.synced_at)),
        ]
        if gzipped is not None:
            headers.append(("Content-Encoding", "gzip"))
        return 200, headers, body, request_id


def _raise_store_error() -> None:
    """Answer, as the Flask app answers any, the store error the first-page layer met."""
    error = request.environ.get(STORE_ERROR)
    if error is not None:
        raise error


@lru_cache(maxsize=4096)  # a sync pass gives many reports the same ``synced_at``
def _last_modified(synced_at: str) -> str:
    """``synced_at`` as an HTTP date, as Flask's ``Response.last_modified`` writes it."""
    return http_date(datetime.fromisoformat(synced_at))


@lru_cache(maxsize=4096)  # a client revalidates with the same header until the report changes
def _entity_tags(if_none_match: str) -> ETags:
    """An ``If-None-Match`` header parsed as Flask's ``make_conditional`` parses it."""
    return parse_etags(if_none_match)
