"""What both APIs share: the APIFlask app, JSON, problem documents, JWT, health probes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from apiflask import APIFlask
from flask import Response, current_app, g, request

from healthapp.audit.context import ANONYMOUS, set_actor
from healthapp.auth.access import unauthorized
from healthapp.config import Base, load_settings
from healthapp.extensions import jwt
from healthapp.json_provider import OrjsonProvider
from healthapp.observability import register_observability
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

    @app.before_request
    def reset_actor() -> None:
        # Threads serve many requests: nobody is authenticated until a view says so.
        set_actor(replace(ANONYMOUS, request_id=g.get("request_id")))

    jwt.init_app(app)
    _register_jwt_problems()
    return app


def register_security_headers(app: APIFlask, *, hsts: bool) -> None:
    """Headers every response carries; health data is never stored by shared caches."""

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/"):
            # Private to the caller; revalidate every time (ETag makes that cheap).
            headers.setdefault("Cache-Control", "private, no-cache")
            headers.setdefault(
                "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"
            )
        if hsts:
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
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
    @app.doc(tags=["Health"], responses=[503])
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
