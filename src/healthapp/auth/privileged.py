"""Privileged operations: the caller's role as PostgreSQL holds it now, not only as its token
says.

A token states the role its user had when it was issued and keeps stating it until it
expires, whatever happened to the account since. For most requests that is enough (and it
keeps PostgreSQL off the read path). A privileged operation (changing a role, creating a
staff account, changing or deleting another user, changing machines, deleting check-ups,
reading the audit trail) also asks PostgreSQL for the caller's role, once per request: a
caller whose account is gone gets 401, one whose role no longer admits the operation 403.

Each privileged view declares it with ``@privileged(roles)`` beside ``@requires(roles)``;
the declaration is kept on the view (``privileged_roles``, ``privileged_when``), so tests
derive from the route table that every privileged route carries it. The role is looked up
through a function the app factory installs (``install_role_lookup``): the accounts that
hold it import this package, so this package does not import them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g

from healthapp.auth.access import bearer_token, principal_from_token, unauthorized
from healthapp.auth.policy import Principal
from healthapp.domain.roles import Role
from healthapp.problems import Problem

__all__ = [
    "ROLE_LOOKUP_EXTENSION",
    "RoleLookup",
    "confirm_stored_role",
    "install_role_lookup",
    "privileged",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The role stored now for a user id; ``None`` when there is no such user any more.
RoleLookup = Callable[[uuid.UUID], Role | None]

ROLE_LOOKUP_EXTENSION = "healthapp.stored_role"

#: The answer to a token whose role claim the database no longer bears out.
ROLE_CHANGED_DETAIL = "Your account's current role may not do this."
#: The answer to a token of an account that was deleted.
ACCOUNT_GONE_DETAIL = "The account of this token no longer exists."


def install_role_lookup(app: Flask, lookup: RoleLookup) -> None:
    """Make ``lookup`` the way ``app``'s privileged views read the caller's stored role."""
    app.extensions[ROLE_LOOKUP_EXTENSION] = lookup


def _stored_role(user_id: uuid.UUID) -> Role | None:
    """The role stored for ``user_id``, asked of the database at most once per request."""
    cached: tuple[uuid.UUID, Role | None] | None = g.get("stored_role")
    if cached is not None and cached[0] == user_id:
        return cached[1]
    lookup: RoleLookup | None = current_app.extensions.get(ROLE_LOOKUP_EXTENSION)
    if lookup is None:  # fail closed: a privileged view never runs on the token's word alone
        raise RuntimeError("privileged views need install_role_lookup(app, ...)")
    role = lookup(user_id)
    g.stored_role = (user_id, role)
    return role


def confirm_stored_role(principal: Principal, roles: frozenset[Role]) -> Role:
    """The caller's stored role, if it is one of ``roles``; 401 if the account is gone,
    403 if its role is not one of them (any more)."""
    role = _stored_role(principal.id)
    if role is None:
        raise unauthorized(ACCOUNT_GONE_DETAIL)
    if role not in roles:
        raise Problem(403, ROLE_CHANGED_DETAIL)
    return role


def _caller() -> Principal | None:
    """The caller ``@requires`` admitted; on a public view, the one whose token came with
    the request (401 for a bad token), or ``None`` without one."""
    principal: Principal | None = g.get("principal")
    if principal is None and bearer_token() is not None:
        principal = principal_from_token()
    return principal


def privileged(
    roles: frozenset[Role], *, when: Callable[..., bool] | None = None
) -> Callable[[F], F]:
    """Confirm in the database that the caller still holds one of ``roles``.

    Without ``when`` every request to the view is privileged: put it right under
    ``@requires(roles)``; a caller without a token gets 401, one whose token claims
    another role 403, as from ``@requires``, and then the stored role must agree.

    With ``when``, the view serves ordinary and privileged requests alike (a user changing
    their own email, or an admin changing someone's role): ``when(**view_arguments)`` says
    which this one is, so put it below ``@json_body`` when it needs the body. A privileged
    request whose token claims one of ``roles`` is confirmed; any other is left to the
    view's policy, which refuses it as it would anyway (404 or 403) without a query.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if when is None:
                principal = _caller()
                if principal is None:
                    raise unauthorized()
                if principal.role not in roles:
                    raise Problem(403, "Your role may not do this.")
                confirm_stored_role(principal, roles)
            elif when(**kwargs):
                principal = _caller()
                if principal is not None and principal.role in roles:
                    confirm_stored_role(principal, roles)
            return view(*args, **kwargs)

        wrapper.privileged_roles = roles  # type: ignore[attr-defined]
        wrapper.privileged_when = when  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
