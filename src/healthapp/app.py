"""The Core API: accounts, machines, check-ups and auth on PostgreSQL (SPEC §2 to §6)."""

from __future__ import annotations

from apiflask import APIFlask
from sqlalchemy import Engine, text

from healthapp import bootstrap, database
from healthapp.auth import token_store
from healthapp.auth.keys import signing_keys
from healthapp.auth.revocation import Revocations
from healthapp.auth.tokens import TokenClaims, TokenIssuer
from healthapp.config import Base, load_settings
from healthapp.database import db
from healthapp.extensions import limiter, redis_options
from healthapp.metrics_access import register_metrics
from healthapp.observability import generate_metrics
from healthapp.sessions.service import TOKEN_ISSUER_EXTENSION
from healthapp.webapp import new_api, register_health, register_token_checks, trust_proxies


def create_app(settings: Base | None = None, *, engine: Engine | None = None) -> APIFlask:
    """Build the Core API from ``settings`` (default: from the environment) on ``engine``
    (default: the bootstrap's, from the settings)."""
    settings = settings or load_settings(signs_tokens=True)
    app = new_api(__name__, title="MyHealthApp Core API", api_name="core", settings=settings)
    if engine is None:
        engine = bootstrap.engine(settings, serves_requests=True)
    register_extensions(app, engine=engine)
    register_tokens(app, settings)
    register_role_lookup(app)
    register_blueprints(app)
    database.register_errorhandlers(app)
    register_health(app, {"postgresql": _check_postgresql})
    register_metrics(app, {"/metrics": generate_metrics})
    trust_proxies(app)
    return app


def register_extensions(app: APIFlask, *, engine: Engine) -> None:
    """Bind the database (on ``engine``) and the rate limiter to ``app``."""
    db.init_app(app, engine=engine)
    redis_url = app.config.get("REDIS_URL")
    app.config["RATELIMIT_STORAGE_URI"] = _limiter_storage(redis_url) if redis_url else "memory://"
    if redis_url:
        # A Redis that does not answer holds a request up to the store timeout, no longer.
        app.config["RATELIMIT_STORAGE_OPTIONS"] = redis_options(
            timeout_seconds=app.config["STORE_TIMEOUT_SECONDS"]
        )
    app.config["RATELIMIT_STRATEGY"] = "moving-window"
    app.config["RATELIMIT_KEY_PREFIX"] = "healthapp-rl"
    app.config["RATELIMIT_SWALLOW_ERRORS"] = True
    limiter.init_app(app)


def register_tokens(app: APIFlask, settings: Base) -> None:
    """Sign tokens with the private key; check them against Redis's revocations, or
    PostgreSQL's while Redis cannot answer (SPEC §14)."""
    keys = signing_keys(settings)
    app.extensions[TOKEN_ISSUER_EXTENSION] = TokenIssuer(
        keys,
        access_lifetime=settings.JWT_ACCESS_TOKEN_EXPIRES,
        refresh_lifetime=settings.JWT_REFRESH_TOKEN_EXPIRES,
    )
    revocations = (
        Revocations.for_settings(bootstrap.redis_client(settings), settings)
        if settings.REDIS_URL
        else None
    )
    register_token_checks(app, keys, revocations=revocations, fallback=_revoked_in_database)


def _revoked_in_database(claims: TokenClaims) -> bool:
    return token_store.is_revoked(session=db.session, claims=claims)


def _limiter_storage(redis_url: str) -> str:
    # limits names a Redis unix socket "redis+unix://"; redis-py names it "unix://". A prefix
    # swap, not urllib.parse: urlunsplit drops the empty authority of "unix:///path".
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url


def register_role_lookup(app: APIFlask) -> None:
    """Let privileged views read the caller's role as PostgreSQL holds it now."""
    from healthapp.accounts import service as accounts
    from healthapp.auth.privileged import install_role_lookup

    install_role_lookup(app, lambda user_id: accounts.get_role(session=db.session, user_id=user_id))


def register_blueprints(app: APIFlask) -> None:
    """Mount every domain's views."""
    from healthapp.accounts.views import bp as accounts_bp
    from healthapp.audit.views import bp as audit_bp
    from healthapp.checkups.views import bp as checkups_bp
    from healthapp.machines.views import bp as machines_bp
    from healthapp.mfa.views import bp as mfa_bp
    from healthapp.sessions.views import bp as sessions_bp
    from healthapp.sessions.views import well_known

    blueprints = (sessions_bp, well_known, mfa_bp, accounts_bp, machines_bp, checkups_bp, audit_bp)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)


def _check_postgresql() -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
