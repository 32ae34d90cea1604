"""HTTP for the token endpoints (SPEC §4, §14) and the public keys that verify tokens."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import Response, jsonify

from healthapp.accounts import service as accounts
from healthapp.auth.access import (
    ALL_ROLES,
    current_claims,
    public,
    requires,
    token_checks,
    unauthorized,
)
from healthapp.auth.keys import KeySet
from healthapp.auth.login_limits import login_limits, restart_failure_count
from healthapp.database import db
from healthapp.errors import DomainError
from healthapp.extensions import client_address
from healthapp.mfa import views as mfa
from healthapp.request_parsing import json_body
from healthapp.sessions import service
from healthapp.sessions.schemas import JsonWebKeySet, TokenCreate, TokenRead

bp = APIBlueprint("auth", __name__, url_prefix="/api/v1/auth", tag="Authentication")
well_known = APIBlueprint("well_known", __name__, url_prefix="/.well-known", tag="Authentication")


@bp.post("/token")
@login_limits
@bp.output(TokenRead)
@bp.doc(responses=[400, 401, 415, 422, 429])
@public
@json_body(TokenCreate)
def create_token(body: TokenCreate) -> TokenRead:
    """Exchange a username and password for an access and a refresh token (a new session)."""
    user = accounts.authenticate(session=db.session, username=body.username, password=body.password)
    if user is None:
        accounts.record_failed_login(
            session=db.session, username=body.username, address=client_address()
        )
        raise unauthorized("The username or password is wrong.")
    try:
        mfa.check_second_factor(session=db.session, user=user, code=body.otp)
    except DomainError:
        accounts.record_failed_login(
            session=db.session, username=body.username, address=client_address()
        )
        raise
    accounts.record_login(session=db.session, user=user, address=client_address())
    restart_failure_count()
    return service.sign_in(session=db.session, issuer=service.token_issuer(), user=user)


@bp.post("/refresh")
@bp.output(TokenRead)
@bp.doc(responses=[401, 503])
@requires(ALL_ROLES, refresh=True)
def refresh_token() -> TokenRead:
    """Exchange a refresh token for a new access token and a new refresh token.

    The refresh token presented is retired: presented again, it ends its whole session
    (every token of that sign-in stops working), as a stolen and replayed one would.
    """
    claims = current_claims()
    # The user as stored now: a deleted account gets no token, a changed role the new one.
    user = accounts.get(session=db.session, user_id=claims.principal.id)
    try:
        return service.refresh(
            session=db.session,
            issuer=service.token_issuer(),
            revocations=token_checks().revocations,
            claims=claims,
            user=user,
        )
    except service.SessionEnded:
        raise unauthorized("The session has ended; sign in again.") from None


@bp.post("/logout")
@bp.doc(responses={204: "The session has ended.", 401: "No valid token.", 503: "Unavailable."})
@requires(ALL_ROLES)
def logout() -> tuple[str, int]:
    """End the session of the access token presented: it and its refresh tokens stop
    working on both APIs."""
    service.sign_out(
        session=db.session, revocations=token_checks().revocations, claims=current_claims()
    )
    return "", 204


@well_known.get("/jwks.json")
@well_known.output(JsonWebKeySet)
@public
def jwks() -> Response:
    """The public keys that verify this service's tokens (RFC 7517), named by ``kid``."""
    keys: KeySet = service.token_issuer().keys
    response = jsonify(keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
