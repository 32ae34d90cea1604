"""HTTP for the token endpoints (SPEC §4)."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import current_app

from healthapp.accounts import service as accounts
from healthapp.auth.access import ALL_ROLES, current_principal, public, requires, unauthorized
from healthapp.database import db
from healthapp.extensions import limiter, login_username_key
from healthapp.mfa import views as mfa
from healthapp.request_parsing import json_body
from healthapp.sessions import service
from healthapp.sessions.schemas import TokenCreate, TokenRead

bp = APIBlueprint("auth", __name__, url_prefix="/api/v1/auth", tag="Authentication")


def _per_user_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_USER"])


def _per_address_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"])


@bp.post("/token")
@limiter.limit(_per_address_limit, scope="login-address")
@limiter.limit(_per_user_limit, key_func=login_username_key, scope="login-user")
@bp.output(TokenRead)
@bp.doc(responses=[400, 401, 415, 422, 429])
@public
@json_body(TokenCreate)
def create_token(body: TokenCreate) -> TokenRead:
    """Exchange a username and password for an access and a refresh token."""
    user = accounts.authenticate(session=db.session, username=body.username, password=body.password)
    if user is None:
        raise unauthorized("The username or password is wrong.")
    mfa.check_second_factor(session=db.session, user=user, code=body.otp)
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
