"""Sessions in PostgreSQL and the revocations they cause (SPEC §14).

A sign-in starts a session (``TokenFamily``); each refresh rotates its refresh token, and a
retired one presented again ends the session (OAuth 2.0 Security BCP §4.14: a replay means
the token leaked). Ending sessions, or all of a user's tokens, is written to Redis first
(``healthapp.auth.revocation``, which both APIs check on every request) and then to the
session rows in the caller's transaction: a revocation that cannot reach Redis refuses the
change (``Unavailable``), and one whose transaction then fails only signs the user out.

The Core API checks PostgreSQL instead of Redis while Redis cannot answer
(:func:`is_revoked`), so uploads go on; the Reports API answers 503 then.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.orm import Session

from healthapp.auth.models import TokenFamily
from healthapp.auth.policy import Principal
from healthapp.auth.revocation import Revocations
from healthapp.auth.tokens import TokenClaims, TokenIssuer, TokenType
from healthapp.errors import Unavailable

#: Why a session ended, as recorded on its row (and in ``auth.revoked`` events).
LOGOUT = "logout"
REPLAY = "refresh_replayed"
PASSWORD = "password_changed"  # noqa: S105 (a reason, not a password)
ROLE = "role_changed"
DELETION = "user_deleted"
SECOND_FACTOR = "second_factor_changed"
_NOT_REVOKED = (
    "The sign-out could not be recorded everywhere (Redis is unreachable); nothing changed."
)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


def start(*, session: Session, issuer: TokenIssuer, principal: Principal) -> IssuedTokens:
    """A new session for ``principal`` and its first tokens (the caller commits)."""
    family = uuid.uuid4()
    access, refresh, refresh_claims = _pair(issuer, principal, family)
    session.execute(
        delete(TokenFamily).where(
            TokenFamily.user_id == principal.id, TokenFamily.expires_at < func.now()
        )
    )
    session.add(
        TokenFamily(
            id=family,
            user_id=principal.id,
            username=principal.username,
            refresh_token_id=refresh_claims.token_id,
            expires_at=_time(refresh_claims.expires_at),
        )
    )
    session.flush()
    return IssuedTokens(access, refresh, int(issuer.lifetimes[TokenType.ACCESS].total_seconds()))


def rotate(
    *,
    session: Session,
    issuer: TokenIssuer,
    revocations: Revocations | None,
    claims: TokenClaims,
    principal: Principal,
) -> IssuedTokens | str:
    """New tokens for the refresh token of ``claims`` (``principal``: the user as stored now),
    which retires it; or why not: the session ended, or — the token was retired already —
    it ends now (``REPLAY``). The caller commits either way."""
    family = session.scalars(
        select(TokenFamily).where(TokenFamily.id == claims.family).with_for_update()
    ).one_or_none()
    if family is None or family.user_id != claims.principal.id or family.revoked_at is not None:
        return "ended"
    if family.refresh_token_id != claims.token_id:
        _publish(
            revocations,
            lambda r: r.revoke_families(
                user_id=family.user_id, username=family.username, families=[family.id]
            ),
        )
        family.revoked_at, family.revoked_reason = datetime.now(UTC), REPLAY
        session.flush()
        return REPLAY
    access, refresh, refresh_claims = _pair(issuer, principal, family.id)
    family.refresh_token_id = refresh_claims.token_id
    family.refreshed_at = datetime.now(UTC)
    family.expires_at = _time(refresh_claims.expires_at)
    session.flush()
    return IssuedTokens(access, refresh, int(issuer.lifetimes[TokenType.ACCESS].total_seconds()))


def end(*, session: Session, revocations: Revocations | None, claims: TokenClaims) -> None:
    """End the session of ``claims``: its access and refresh tokens stop working."""
    principal = claims.principal
    _publish(
        revocations,
        lambda r: r.revoke_families(
            user_id=principal.id, username=principal.username, families=[claims.family]
        ),
    )
    session.execute(
        update(TokenFamily)
        .where(TokenFamily.id == claims.family, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=LOGOUT)
    )


def revoke_user(
    *,
    session: Session,
    revocations: Revocations | None,
    user_id: uuid.UUID,
    username: str,
    reason: str,
) -> int:
    """Revoke every token of the user (a password or role change, a deletion); the number
    of sessions it ended. Runs in the caller's transaction."""
    _publish(revocations, lambda r: r.revoke_user(user_id=user_id, username=username))
    result = session.execute(
        update(TokenFamily)
        .where(TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=reason)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def is_revoked(*, session: Session, claims: TokenClaims) -> bool:
    """The Core API's check while Redis cannot answer: the token's session must exist, be
    its user's and not have ended (every revocation ends the sessions it revokes)."""
    revoked_at, user_id = session.execute(
        select(TokenFamily.revoked_at, TokenFamily.user_id).where(TokenFamily.id == claims.family)
    ).one_or_none() or (None, None)
    return user_id != claims.principal.id or revoked_at is not None


def republish(*, connection: Connection | Session, redis_client: redis.Redis) -> int:
    """Write every ended, unexpired session to Redis again, for a Redis that lost its data
    (the sync's watermark finds that out); the number written. Every revocation ends the
    sessions it revokes, so the ended sessions are all a lost revocation was."""
    rows = connection.execute(
        select(
            TokenFamily.user_id,
            TokenFamily.username,
            TokenFamily.id,
            func.extract("epoch", TokenFamily.expires_at - func.now()),
        ).where(TokenFamily.revoked_at.is_not(None), TokenFamily.expires_at > func.now())
    ).all()
    for user_id, username, family, remaining in rows:
        revocations = Revocations(redis_client, retention_seconds=int(remaining))
        revocations.revoke_families(user_id=user_id, username=username, families=[family])
    return len(rows)


def _pair(
    issuer: TokenIssuer, principal: Principal, family: uuid.UUID
) -> tuple[str, str, TokenClaims]:
    access, _ = issuer.issue(principal, token_type=TokenType.ACCESS, family=family)
    refresh, refresh_claims = issuer.issue(principal, token_type=TokenType.REFRESH, family=family)
    return access, refresh, refresh_claims


def _publish(revocations: Revocations | None, write: Callable[[Revocations], object]) -> None:
    """Write a revocation to Redis (none to write without Redis: the Core API alone)."""
    if revocations is None:
        return
    try:
        write(revocations)
    except redis.RedisError as error:
        raise Unavailable(_NOT_REVOKED) from error


def _time(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
