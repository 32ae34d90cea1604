"""Who is calling and what they may do: bearer tokens checked, roles enforced.

Each protected view declares the roles that may call it with ``@requires(...)`` (and which
token, access or refresh, it takes); the declaration is kept on the view so tests can derive
the role matrix from the route table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from apiflask.scaffold import _annotate
from flask import g
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError

from healthapp.audit.context import Actor, set_actor
from healthapp.domain.roles import Role
from healthapp.problems import Problem, not_found

F = TypeVar("F", bound=Callable[..., Any])

ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.OPERATOR, Role.ADMIN})
ADMIN_ONLY = frozenset({Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as its access token describes it."""

    id: uuid.UUID
    username: str
    role: Role

    def can_see(self, user_id: uuid.UUID) -> bool:
        """Whether the caller may read ``user_id``'s data."""
        return self.role.sees_everyone or self.id == user_id

    def require_sees(self, user_id: uuid.UUID, what: str = "user") -> None:
        """A 404 (not a 403: ids cannot be probed) unless the caller may see ``user_id``."""
        if not self.can_see(user_id):
            raise not_found(what)


def unauthorized(detail: str = "A valid bearer access token is required.") -> Problem:
    """The 401 answered for a missing, expired or forged token."""
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="healthapp"'})


def principal_from_token(*, refresh: bool = False) -> Principal:
    try:
        verify_jwt_in_request(refresh=refresh)
        claims = get_jwt()
        return Principal(
            id=uuid.UUID(claims["sub"]), username=claims["username"], role=Role(claims["role"])
        )
    except (JWTExtendedException, PyJWTError, KeyError, ValueError) as exc:
        raise unauthorized() from exc


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
        _annotate(wrapper, security=[{"BearerAuth": []}])
        return wrapper  # type: ignore[return-value]

    return decorator


def public(view: F) -> F:
    """Mark a view as needing no token (registration, token, health, docs)."""
    view.allowed_roles = None  # type: ignore[attr-defined]
    return view
