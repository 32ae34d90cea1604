"""Issuing tokens to a user whose credentials the accounts domain has checked."""

from __future__ import annotations

import uuid
from typing import Protocol

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from healthapp.sessions.schemas import TokenRead


class TokenSubject(Protocol):
    """What a token says about its user (an account, as ``accounts.models.User`` is)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def _claims(user: TokenSubject) -> dict[str, str]:
    return {"username": user.username, "role": user.role}


def issue_tokens(*, user: TokenSubject, with_refresh: bool = True) -> TokenRead:
    """An access token (and a refresh token) carrying the user's id, username and role."""
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    access = create_access_token(identity=str(user.id), additional_claims=_claims(user))
    refresh = (
        create_refresh_token(identity=str(user.id), additional_claims=_claims(user))
        if with_refresh
        else None
    )
    return TokenRead(
        access_token=access, refresh_token=refresh, expires_in=int(expires.total_seconds())
    )
