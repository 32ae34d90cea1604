"""Who is calling and which operations their role may call: bearer tokens checked.

Each protected view declares the roles that may call it with ``@requires(...)`` (and which
token, access or refresh, it takes); the declaration is kept on the view so tests can derive
the role matrix from the route table. Whose data the caller may then read or change is
``healthapp.auth.policy``'s to say.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

import structlog
from flask import current_app, g, request

from healthapp.auth.policy import ADMIN_ONLY, ALL_ROLES, STAFF, Principal
from healthapp.auth.revocation import Revocations
from healthapp.auth.tokens import InvalidToken, TokenClaims, TokenType, TokenVerifier
from healthapp.domain.roles import Role
from healthapp.problems import REDIS_UNREACHABLE, Problem
from healthapp.request_context import Actor, set_actor

__all__ = [
    "ADMIN_ONLY",
    "ALL_ROLES",
    "STAFF",
    "TOKEN_CHECKS_EXTENSION",
    "Principal",
    "TokenChecks",
    "VerifiedTokens",
    "act_as",
    "bearer_token",
    "current_claims",
    "current_principal",
    "optional_principal",
    "principal_from_token",
    "public",
    "requires",
    "token_checks",
    "unauthorized",
]

F = TypeVar("F", bound=Callable[..., Any])

_log = structlog.get_logger("healthapp.auth")
#: How long the Core API checks revocations in PostgreSQL alone after Redis failed to answer.
REDIS_RETRY_SECONDS = 5.0


def unauthorized(detail: str = "A valid bearer access token is required.") -> Problem:
    """The 401 answered for a missing, expired, revoked or forged token."""
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="healthapp"'})


class VerifiedTokens:
    """The claims of recently verified tokens, until each token expires.

    A mobile client sends the same access token with every request for its lifetime;
    checking its signature and claims once instead of on every request takes the most
    expensive step off the read path. Only tokens that passed the full check are kept, by
    their exact text, so a forged, altered or expired token is never admitted from here.
    Revocation is not cached: it is asked on every request (``TokenChecks.is_revoked``).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._entries: dict[tuple[str, str], TokenClaims] = {}
        self._lock = threading.Lock()

    def get(self, token: str, token_type: str) -> TokenClaims | None:
        """The claims of ``token`` if it was verified and has not expired since."""
        claims = self._entries.get((token, token_type))
        if claims is None:
            return None
        if time.time() >= claims.expires_at:
            with self._lock:
                self._entries.pop((token, token_type), None)
            return None
        return claims

    def put(self, token: str, claims: TokenClaims) -> None:
        """Remember a verified token (the oldest one makes room when full)."""
        with self._lock:
            if len(self._entries) >= self.capacity:
                self._entries.pop(next(iter(self._entries)))
            self._entries[(token, claims.token_type.value)] = claims


@dataclass
class TokenChecks:
    """How an app checks a bearer token: the signature (``verifier``, its results kept in
    ``cache``), then revocation in Redis (``revocations``). The Core API also has a
    ``fallback``, asked while Redis cannot answer (PostgreSQL); without one, that request
    fails with the store's error (a 503), never admitted unchecked."""

    verifier: TokenVerifier
    revocations: Revocations | None
    fallback: Callable[[TokenClaims], bool] | None = None
    cache: VerifiedTokens = field(default_factory=VerifiedTokens)
    #: Until when (``time.monotonic()``) the fallback is asked without trying Redis: an
    #: unreachable Redis costs one store timeout, not one per request.
    _redis_skipped_until: float = 0.0

    def claims(self, token: str, token_type: TokenType) -> TokenClaims:
        """The claims of a valid, unrevoked ``token``; the 401 problem otherwise."""
        claims = self.cache.get(token, token_type.value)
        if claims is None:
            try:
                claims = self.verifier.verify(token, token_type)
            except InvalidToken:
                raise unauthorized() from None
            self.cache.put(token, claims)
        if self.is_revoked(claims):
            raise unauthorized()
        return claims

    def is_revoked(self, claims: TokenClaims) -> bool:
        if self.revocations is None or (
            self.fallback is not None and time.monotonic() < self._redis_skipped_until
        ):
            return self.fallback(claims) if self.fallback is not None else False
        try:
            return self.revocations.is_revoked(claims)
        except REDIS_UNREACHABLE:
            if self.fallback is None:
                raise
            self._redis_skipped_until = time.monotonic() + REDIS_RETRY_SECONDS
            _log.warning("revocations checked in PostgreSQL: Redis is unreachable")
            return self.fallback(claims)


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case,
    RFC 9110 §11.1), if the request has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token and " " not in token else None


TOKEN_CHECKS_EXTENSION = "healthapp.token_checks"  # noqa: S105 (a key of app.extensions)


def token_checks() -> TokenChecks:
    """The current app's token checks (bound by ``webapp.register_tokens``)."""
    checks: TokenChecks = current_app.extensions[TOKEN_CHECKS_EXTENSION]
    return checks


def verified_claims(*, refresh: bool = False) -> TokenClaims:
    """The claims of the request's bearer token, checked; the 401 problem otherwise."""
    token = bearer_token()
    if token is None:
        raise unauthorized()
    claims = token_checks().claims(token, TokenType.REFRESH if refresh else TokenType.ACCESS)
    g.token_claims = claims
    return claims


def principal_from_token(*, refresh: bool = False) -> Principal:
    """The caller the request's bearer token names, checked; the 401 problem otherwise."""
    return verified_claims(refresh=refresh).principal


def optional_principal() -> Principal | None:
    """The caller, for a view anyone may call: ``None`` without an ``Authorization`` header;
    a header that does not hold a valid token is still the 401."""
    if "Authorization" not in request.headers:
        return None
    return principal_from_token()


def current_claims() -> TokenClaims:
    """The verified claims of the current request's token; only inside a ``@requires`` view."""
    claims: TokenClaims = g.token_claims
    return claims


def current_principal() -> Principal:
    """The caller of the current request; only valid inside a ``@requires`` view."""
    principal: Principal = g.principal
    return principal


def act_as(principal: Principal) -> None:
    """Record what follows in this request as done by ``principal`` (``@requires`` does it
    for its views; a public view does it for a caller whose token came along)."""
    set_actor(
        Actor(
            id=principal.id,
            username=principal.username,
            role=principal.role.value,
            request_id=g.get("request_id"),
        )
    )


def requires(roles: frozenset[Role], *, refresh: bool = False) -> Callable[[F], F]:
    """Admit callers whose access token carries one of ``roles``; 401 without one, 403 else."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = principal_from_token(refresh=refresh)
            if principal.role not in roles:
                raise Problem(403, "Your role may not do this.")
            g.principal = principal
            act_as(principal)
            return view(*args, **kwargs)

        wrapper.allowed_roles = roles  # type: ignore[attr-defined]
        wrapper.token_type = "refresh" if refresh else "access"  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def public(view: F) -> F:
    """Mark a view as needing no token (registration, token, health, docs)."""
    view.allowed_roles = None  # type: ignore[attr-defined]
    return view
