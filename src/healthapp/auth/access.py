"""Who is calling and which operations their role may call: bearer tokens checked.

Each protected view declares the roles that may call it with ``@requires(...)`` (and which
token, access or refresh, it takes); the declaration is kept on the view so tests can derive
the role matrix from the route table. Whose data the caller may then read or change is
``healthapp.auth.policy``'s to say.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError

from healthapp.auth.policy import ADMIN_ONLY, ALL_ROLES, STAFF, Principal
from healthapp.domain.roles import Role
from healthapp.problems import Problem
from healthapp.request_context import Actor, set_actor

__all__ = [
    "ADMIN_ONLY",
    "ALL_ROLES",
    "STAFF",
    "VERIFIED_TOKENS_EXTENSION",
    "Principal",
    "VerifiedTokens",
    "bearer_token",
    "current_principal",
    "principal_from_token",
    "public",
    "requires",
    "unauthorized",
    "verified_tokens",
]

F = TypeVar("F", bound=Callable[..., Any])


def unauthorized(detail: str = "A valid bearer access token is required.") -> Problem:
    """The 401 answered for a missing, expired or forged token."""
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="healthapp"'})


class VerifiedTokens:
    """The principals of recently verified tokens, until each token expires.

    A mobile client sends the same access token with every request for its lifetime;
    checking its signature and claims once instead of on every request takes the most
    expensive step off the read path. Only tokens that passed the full check are kept, by
    their exact text, so a forged, altered or expired token is never admitted from here.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._entries: dict[tuple[str, str], tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str, token_type: str) -> Principal | None:
        """The principal of ``token`` if it was verified and has not expired since."""
        entry = self._entries.get((token, token_type))
        if entry is None:
            return None
        principal, expires_at = entry
        if time.time() >= expires_at:
            with self._lock:
                self._entries.pop((token, token_type), None)
            return None
        return principal

    def put(self, token: str, token_type: str, principal: Principal, expires_at: float) -> None:
        """Remember a verified token (the oldest one makes room when full)."""
        with self._lock:
            if len(self._entries) >= self.capacity:
                self._entries.pop(next(iter(self._entries)))
            self._entries[(token, token_type)] = (principal, expires_at)


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if the request has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token and " " not in token else None


VERIFIED_TOKENS_EXTENSION = "healthapp.verified_tokens"


def verified_tokens() -> VerifiedTokens:
    """The current app's cache of verified tokens (one per app: each has its own key)."""
    cache: VerifiedTokens | None = current_app.extensions.get(VERIFIED_TOKENS_EXTENSION)
    if cache is None:
        cache = current_app.extensions.setdefault(VERIFIED_TOKENS_EXTENSION, VerifiedTokens())
    return cache


def principal_from_token(*, refresh: bool = False) -> Principal:
    token_type = "refresh" if refresh else "access"
    token = bearer_token()
    cache = verified_tokens()
    if token is not None:
        known = cache.get(token, token_type)
        if known is not None:
            return known
        # flask_jwt_extended matches the scheme case-sensitively; RFC 9110 §11.1 does not.
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    try:
        verify_jwt_in_request(refresh=refresh)
        claims = get_jwt()
        principal = Principal(
            id=uuid.UUID(claims["sub"]), username=claims["username"], role=Role(claims["role"])
        )
        expires_at = float(claims["exp"])
    except (JWTExtendedException, PyJWTError, KeyError, ValueError, TypeError) as exc:
        raise unauthorized() from exc
    if token is not None:
        cache.put(token, token_type, principal, expires_at)
    return principal


def current_principal() -> Principal:
    """The caller of the current request; only valid inside a ``@requires`` view."""
    principal: Principal = g.principal
    return principal


def requires(roles: frozenset[Role], *, refresh: bool = False) -> Callable[[F], F]:
    """Admit callers whose access token carries one of ``roles``; 401 without one, 403 else."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = principal_from_token(refresh=refresh)
            if principal.role not in roles:
                raise Problem(403, "Your role may not do this.")
            g.principal = principal
            set_actor(
                Actor(
                    id=principal.id,
                    username=principal.username,
                    role=principal.role.value,
                    request_id=g.get("request_id"),
                )
            )
            return view(*args, **kwargs)

        wrapper.allowed_roles = roles  # type: ignore[attr-defined]
        wrapper.token_type = "refresh" if refresh else "access"  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def public(view: F) -> F:
    """Mark a view as needing no token (registration, token, health, docs)."""
    view.allowed_roles = None  # type: ignore[attr-defined]
    return view
