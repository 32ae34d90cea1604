"""What both APIs share: the APIFlask app, JSON, problem documents, JWT, health probes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from apiflask import APIFlask
from flask import Response, current_app, g, request

from healthapp.audit.context import ANONYMOUS, SYSTEM, set_actor
from healthapp.auth.access import unauthorized
from healthapp.config import Base, load_settings
from healthapp.extensions import cors, jwt
from healthapp.json_provider import OrjsonProvider
from healthapp.observability import register_observability
from healthapp.openapi import register_openapi_conventions
from healthapp.problems import Problem, problem_response, register_errorhandlers

#: A readiness check: raises when its store is unreachable.
ReadinessCheck = Callable[[], None]


def new_api(
    import_name: str, *, title: str, api_name: str = "core", settings: Base | None = None
) -> APIFlask:
    """An APIFlask app with the conventions of SPEC §3 and the JWT checks of §4."""
    settings = settings or load_settings()
    app = APIFlask(
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
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
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

    jwt.init_app(app)
    _register_jwt_problems()
    register_openapi_conventions(app)
    return app


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
    a ``q`` that is not a number admits nothing.
    """
    if not accept_encoding:
        return False
    wildcard: bool | None = None
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        weight = 1.0
        name, _, value = parameters.partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        if coding == "*":
            wildcard = weight > 0
        else:
            return weight > 0
    return bool(wildcard)


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


def _register_jwt_problems() -> None:
    """Every token failure is the same 401 problem; its cause is not disclosed."""

    def reject(*_args: object) -> Response:
        return problem_response(unauthorized())

    jwt.unauthorized_loader(reject)
    jwt.invalid_token_loader(reject)
    jwt.expired_token_loader(reject)
    jwt.revoked_token_loader(reject)
    jwt.needs_fresh_token_loader(reject)
    jwt.user_lookup_error_loader(reject)


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
            raise Problem(
                503,
                "A backing store is unreachable: " + ", ".join(failed) + ".",
                headers={"Retry-After": "5"},
            )
        return {"status": "ready", "checks": dict.fromkeys(checks, "ok")}

    healthz.allowed_roles = None  # type: ignore[attr-defined]
    readyz.allowed_roles = None  # type: ignore[attr-defined]
