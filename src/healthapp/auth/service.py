"""Checking credentials and issuing tokens."""

from __future__ import annotations

import uuid

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthapp.accounts.models import User
from healthapp.auth.passwords import verify_against_dummy, verify_password
from healthapp.auth.schemas import TokenRead


def authenticate(*, session: Session, username: str, password: str) -> User | None:
    """The user these credentials belong to; ``None`` alike for unknown user and wrong password."""
    user = session.scalars(select(User).where(User.username == username.lower())).one_or_none()
    if user is None:
        verify_against_dummy(password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    return user


def _claims(user: User) -> dict[str, str]:
    return {"username": user.username, "role": user.role}


def issue_tokens(*, user: User, with_refresh: bool = True) -> TokenRead:
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


def refresh(*, session: Session, user_id: uuid.UUID) -> User | None:
    """The still-existing user a refresh token names, with its current role."""
    return session.get(User, user_id)
