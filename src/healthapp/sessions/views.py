"""HTTP for the token endpoints (SPEC §4)."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import Response, current_app

from healthapp.accounts import service as accounts
from healthapp.auth.access import ALL_ROLES, current_principal, public, requires, unauthorized
from healthapp.database import db
from healthapp.extensions import (
    client_address,
    limiter,
    login_username_address_key,
    login_username_key,
)
from healthapp.request_parsing import json_body
from healthapp.sessions import service
from healthapp.sessions.schemas import TokenCreate, TokenRead

bp = APIBlueprint("auth", __name__, url_prefix="/api/v1/auth", tag="Authentication")


def _per_user_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_USER"])


def _per_username_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_USERNAME"])


def _per_address_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"])


#: The scope of the per (username, address) limit, whose count a success starts again.
_PAIR_SCOPE = "login-user"


def _refused(response: Response) -> bool:
    """Whether a login counts against the per-username cap: refused credentials (or
    second factor). A 400 or 422 tried no password, and a 429 was refused before one was
    checked: counting those would let attempts the limits refused fill the cap."""
    return response.status_code == 401


def _restart_failure_count() -> None:
    """Clear this (username, address) pair's count after a login that succeeded: the
    limit counts the failures since the last success, and the owner's sign-ins never add
    up to a lockout of their own."""
    for limit in limiter.current_limits:
        if limit.request_args[-1].endswith(f":{_PAIR_SCOPE}"):
            try:
                limit.limiter.clear(limit.limit, *limit.request_args)
            except Exception:  # the limits fail open when their store does not answer
                current_app.logger.warning("could not clear a login failure count")


# Every attempt from an address counts, whatever it names. The (username, address) pair
# counts every attempt as it is checked, in one atomic step, so that requests sent at once
# cannot slip past it; a success clears it. The per-username cap counts failures only,
# after the view: it checks before whether one more would fit, and concurrent requests
# are all checked before any is counted, but each address gets only as many to it as the
# pair limit lets through. So no one address can reach the cap and lock the owner out.
# Limits are checked shortest period first, those of one period from the lowest decorator
# up, the first to refuse ending the check: with the default periods the pair's comes
# first, and its figures are the X-RateLimit headers.
@bp.post("/token")
@limiter.limit(_per_address_limit, scope="login-address")
@limiter.limit(
    _per_username_limit,
    key_func=login_username_key,
    scope="login-username",
    deduct_when=_refused,
)
@limiter.limit(_per_user_limit, key_func=login_username_address_key, scope=_PAIR_SCOPE)
@bp.output(TokenRead)
@bp.doc(responses=[400, 401, 415, 422, 429])
@public
@json_body(TokenCreate)
def create_token(body: TokenCreate) -> TokenRead:
    """Exchange a username and password for an access and a refresh token."""
    user = accounts.authenticate(session=db.session, username=body.username, password=body.password)
    if user is None:
        accounts.record_failed_login(
            session=db.session, username=body.username, address=client_address()
        )
        raise unauthorized("The username or password is wrong.")
    accounts.record_login(session=db.session, user=user, address=client_address())
    _restart_failure_count()
    return service.issue_tokens(user=user)


@bp.post("/refresh")
@bp.output(TokenRead)
@bp.doc(responses=[401])
@requires(ALL_ROLES, refresh=True)
def refresh_token() -> TokenRead:
    """Exchange a refresh token for a new access token."""
    # The user as stored now: a deleted account gets no token, a changed role the new one.
    user = accounts.get(session=db.session, user_id=current_principal().id)
    if user is None:
        raise unauthorized("The account no longer exists.")
    return service.issue_tokens(user=user, with_refresh=False)
