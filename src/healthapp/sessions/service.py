"""Sessions: signing in, refreshing with rotation, signing out (SPEC §4, §14).

The accounts domain checks the credentials; this issues the tokens of a session, rotates
them and ends it, each in one unit of work with its audit event.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from flask import current_app
from sqlalchemy.orm import Session

from healthapp.audit import service as audit
from healthapp.auth import token_store
from healthapp.auth.policy import Principal
from healthapp.auth.revocation import Revocations
from healthapp.auth.tokens import TokenClaims, TokenIssuer
from healthapp.domain.roles import Role
from healthapp.sessions.schemas import TokenRead
from healthapp.unit_of_work import unit_of_work

#: Where the Core API keeps its ``TokenIssuer`` (the Reports API has none).
TOKEN_ISSUER_EXTENSION = "healthapp.token_issuer"  # noqa: S105 (a key of app.extensions)


class TokenSubject(Protocol):
    """What a token says about its user (an account, as ``accounts.models.User`` is)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


class SessionEnded(Exception):
    """The refresh token's session has ended, or it was replayed and ends now."""


def token_issuer() -> TokenIssuer:
    """The current app's issuer of tokens."""
    issuer: TokenIssuer = current_app.extensions[TOKEN_ISSUER_EXTENSION]
    return issuer


def principal_of(user: TokenSubject) -> Principal:
    return Principal(id=user.id, username=user.username, role=Role(user.role))


def sign_in(*, session: Session, issuer: TokenIssuer, user: TokenSubject) -> TokenRead:
    """A new session for ``user`` (whose credentials were checked) and its tokens."""
    with unit_of_work(session):
        issued = token_store.start(session=session, issuer=issuer, principal=principal_of(user))
    return _read(issued)


def refresh(
    *,
    session: Session,
    issuer: TokenIssuer,
    revocations: Revocations | None,
    claims: TokenClaims,
    user: TokenSubject | None,
) -> TokenRead:
    """New access and refresh tokens for the refresh token of ``claims``, which retires it
    (``user``: its user as stored now; ``None`` once deleted). ``SessionEnded`` if its session
    ended; a retired token presented again ends the session, recorded as ``auth.revoked``."""
    if user is None:
        raise SessionEnded
    with unit_of_work(session):
        issued = token_store.rotate(
            session=session,
            issuer=issuer,
            revocations=revocations,
            claims=claims,
            principal=principal_of(user),
        )
        if issued == token_store.REPLAY:
            _record(session, "auth.revoked", claims, reason=token_store.REPLAY, sessions=1)
    if isinstance(issued, str):
        raise SessionEnded
    return _read(issued)


def sign_out(*, session: Session, revocations: Revocations | None, claims: TokenClaims) -> None:
    """End the session of the access token of ``claims``: it and its refresh tokens stop
    working on both APIs."""
    with unit_of_work(session):
        token_store.end(session=session, revocations=revocations, claims=claims)
        _record(session, "auth.logout", claims)


def _record(session: Session, action: str, claims: TokenClaims, **details: object) -> None:
    principal = claims.principal
    audit.record(
        session=session,
        action=action,
        subjects=[audit.Subject(principal.id, principal.username, details)],
    )


def _read(issued: token_store.IssuedTokens) -> TokenRead:
    return TokenRead(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )
