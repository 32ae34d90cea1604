"""What both APIs share: the APIFlask app, JSON, problem documents, token checks, health probes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from apiflask import APIFlask
from flask import Response, current_app, g, request
from werkzeug.http import parse_accept_header
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import RequestRedirect

from healthapp.auth.access import TOKEN_CHECKS_EXTENSION, TokenChecks
from healthapp.auth.keys import KeySet
from healthapp.auth.revocation import Revocations
from healthapp.auth.tokens import TokenClaims, TokenVerifier
from healthapp.config import Base, load_settings
from healthapp.extensions import cors
from healthapp.json_provider import OrjsonProvider
from healthapp.observability import register_observability
from healthapp.openapi import register_openapi_conventions
from healthapp.problems import (
    Problem,
    register_errorhandlers,
    store_unreachable,
)
from healthapp.request_context import ANONYMOUS, SYSTEM, set_actor

#: A readiness check: raises when its store is unreachable.
ReadinessCheck = Callable[[], None]


#: The longest request header line (name, ``: ``, value, CRLF) either API accepts: gunicorn's
#: default limit, checked by the app so that the refusal is a problem document
#: (``gunicorn_conf`` lets longer lines through to it, up to a ceiling of its own).
MAX_HEADER_LINE_BYTES = 8190
#: The header lines WSGI names without the ``HTTP_`` prefix.
_UNPREFIXED_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH")


class WebApi(APIFlask):
    """APIFlask with an ``OPTIONS`` answer that carries no HTML label."""

    def make_default_options_response(self) -> Response:
        """``OPTIONS``: 204 with ``Allow`` and no body (Flask's is an empty ``text/html`` 200)."""
        response: Response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response


def new_api(
    import_name: str, *, title: str, api_name: str = "core", settings: Base | None = None
) -> APIFlask:
    """An APIFlask app with the conventions of SPEC §3 and the JWT checks of §4."""
    settings = settings or load_settings()
    app = WebApi(
        import_name,
        title=title,
        version="1.0.0",
        docs_path="/docs",
        spec_path="/openapi.json",
        docs_ui="swagger-ui",
    )
    app.json_provider_class = OrjsonProvider
    app.json = OrjsonProvider(app)
    app.config.from_mapping(settings.as_flask_config())
    app.config.update(
        JSON_SORT_KEYS=False,
        SECURITY_SCHEMES={
            "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        },
        VALIDATION_ERROR_STATUS_CODE=422,
        SPEC_FORMAT="json",
    )
    register_errorhandlers(app)
    register_observability(app, api=api_name)
    register_security_headers(app, hsts=settings.NAME == "production")
    register_cors(app)

    @app.before_request
    def reset_actor() -> None:
        # Threads serve many requests: nobody is authenticated until a view says so.
        set_actor(replace(ANONYMOUS, request_id=g.get("request_id")))

    @app.teardown_request
    def forget_actor(_exc: BaseException | None) -> None:
        # Whatever runs on this thread after the request acts as the system, not as its caller.
        set_actor(SYSTEM)

    register_protocol_problems(app)
    register_openapi_conventions(app)
    return app


def trust_proxies(app: APIFlask) -> None:
    """Take the client address ``TRUSTED_PROXY_COUNT`` hops back in ``X-Forwarded-For``.

    Each factory calls this last, so that werkzeug's ``ProxyFix`` wraps every other WSGI
    layer (the Reports API's first-page server too) and all of them see one address. With
    0 nothing is wrapped: the header is ignored and the address is the socket peer, so a
    client cannot pick the address its rate limits count against.

    Only ``X-Forwarded-For``: the scheme is gunicorn's to set (``FORWARDED_ALLOW_IPS``
    names the proxies whose ``X-Forwarded-Proto`` it believes), and the host stays the
    ``Host`` header the proxy passes on, since a proxy that does not set
    ``X-Forwarded-Host`` would let the client's own value into redirect ``Location``s.
    """
    count = int(app.config.get("TRUSTED_PROXY_COUNT") or 0)
    if count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=0, x_host=0, x_port=0, x_prefix=0
        )


def security_headers(path: str, *, hsts: bool) -> list[tuple[str, str]]:
    """The headers every response to ``path`` carries; health data is never stored by
    shared caches."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ]
    if path.startswith("/api/"):
        # Private to the caller; revalidate every time (ETag makes that cheap).
        headers.append(("Cache-Control", "private, no-cache"))
        headers.append(("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"))
    if hsts:
        headers.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    return headers


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header admits a gzip body (RFC 9110 §12.5.3).

    ``gzip`` (or ``x-gzip``) with a non-zero ``q``, or else ``*`` with a non-zero ``q``;
    an item whose ``q`` is not a valid weight is ignored.
    """
    if not accept_encoding:
        return False
    return _accepts_gzip(accept_encoding)


_GZIP_CODINGS = frozenset({"gzip", "x-gzip", "*"})


@lru_cache(maxsize=256)  # clients send a handful of distinct values; the read path parses once
def _accepts_gzip(accept_encoding: str) -> bool:
    # Werkzeug sorts specific codings before "*" (then by weight): the first item naming
    # gzip is the one RFC 9110 applies.
    for coding, weight in parse_accept_header(accept_encoding):
        if coding.partition(";")[0].strip().lower() in _GZIP_CODINGS:
            return weight > 0
    return False


def oversized_header(environ: Mapping[str, Any]) -> str | None:
    """The WSGI name of a request header longer than :data:`MAX_HEADER_LINE_BYTES`, if any."""
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            if len(key) - 5 + len(value) + 4 > MAX_HEADER_LINE_BYTES:
                return key
        elif key in _UNPREFIXED_HEADERS and len(key) + len(value) + 4 > MAX_HEADER_LINE_BYTES:
            return key
    return None


def register_protocol_problems(app: APIFlask) -> None:
    """Answer as problem documents what gunicorn or Werkzeug would answer in HTML: an
    over-long header (431) and a path that lacks its trailing slash (308, ``Location`` kept)."""

    @app.before_request
    def refuse_oversized_header() -> None:
        key = oversized_header(request.environ)
        if key is not None:
            name = key.removeprefix("HTTP_").replace("_", "-").title()
            raise Problem(
                431,
                f"The {name} header is longer than {MAX_HEADER_LINE_BYTES:,} bytes.",
            )

    @app.before_request
    def redirect_to_canonical_path() -> None:
        # Flask answers a routing redirect itself, past every error handler.
        redirect = request.routing_exception
        if isinstance(redirect, RequestRedirect):
            raise Problem(
                308,
                "This resource's path ends with a slash; repeat the request at the Location.",
                headers={"Location": redirect.new_url},
            )


def register_cors(app: APIFlask) -> None:
    """Let browsers on the ``CORS_ORIGINS`` origins call the API; no CORS headers otherwise."""
    if app.config["CORS_ORIGINS"]:
        cors.init_app(
            app,
            origins=app.config["CORS_ORIGINS"],
            expose_headers=["ETag", "Last-Modified", "Retry-After", "X-Request-ID"],
        )


def register_security_headers(app: APIFlask, *, hsts: bool) -> None:
    """Add :func:`security_headers` to every response (a view's own values stand)."""
    api_headers = security_headers("/api/", hsts=hsts)
    other_headers = security_headers("/", hsts=hsts)

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in api_headers if request.path.startswith("/api/") else other_headers:
            headers.setdefault(name, value)
        return response


def register_token_checks(
    app: APIFlask,
    keys: KeySet,
    *,
    revocations: Revocations | None,
    fallback: Callable[[TokenClaims], bool] | None = None,
) -> TokenChecks:
    """Check bearer tokens against ``keys`` and ``revocations`` on ``app`` (SPEC §14)."""
    checks = TokenChecks(TokenVerifier(keys), revocations, fallback)
    app.extensions[TOKEN_CHECKS_EXTENSION] = checks
    return checks


def register_health(app: APIFlask, checks: Mapping[str, ReadinessCheck]) -> None:
    """``/healthz`` (the process answers) and ``/readyz`` (each store answers), no auth."""

    @app.get("/healthz")
    @app.doc(tags=["Health"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz")
    @app.doc(
        tags=["Health"],
        responses={200: "Every store answers.", 503: "A store is unreachable."},
    )
    def readyz() -> dict[str, object]:
        """Every store this process needs answers."""
        failed = []
        for name, check in checks.items():
            try:
                check()
            except Exception:
                current_app.logger.warning("readiness check failed: %s", name)
                failed.append(name)
        if failed:
            raise store_unreachable("A backing store is unreachable: " + ", ".join(failed) + ".")
        return {"status": "ready", "checks": dict.fromkeys(checks, "ok")}

    healthz.allowed_roles = None  # type: ignore[attr-defined]
    readyz.allowed_roles = None  # type: ignore[attr-defined]
