"""Revoked tokens, kept in Redis so that both APIs check them without PostgreSQL (SPEC §14).

One hash per user, under the hash tag of the user's report (the same Redis Cluster slot, so
the Reports API reads the first page and checks the token in one round trip)::

    auth:{u:<username>}:<user id>
        b               tokens issued at or before this time (ms since the epoch) are
                        revoked: the password or the role changed, or the user was deleted
        f:<family id>   the session was ended: logged out, or its refresh token replayed

A request's check is one ``HMGET`` of two fields. The hash expires the longest token
lifetime after its last change: by then every token it revokes has expired. Revoking writes
here before the change commits in PostgreSQL (``healthapp.auth.token_store``), so a change
whose revocation could not be written is not made.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis

from healthapp.auth.tokens import TokenClaims
from healthapp.config import Base

_CUTOFF = "b"


def revocation_key(username: str, user_id: uuid.UUID) -> str:
    """The hash of ``user_id``'s revocations (the username gives its hash tag)."""
    return f"auth:{{u:{username}}}:{user_id}"


def family_field(family: uuid.UUID) -> str:
    return f"f:{family}"


def check_command(claims: TokenClaims) -> tuple[str, ...]:
    """The one command whose reply :func:`is_revoked` reads."""
    principal = claims.principal
    return (
        "HMGET",
        revocation_key(principal.username, principal.id),
        _CUTOFF,
        family_field(claims.family),
    )


def is_revoked(claims: TokenClaims, reply: list[Any]) -> bool:
    """Whether the reply to :func:`check_command` revokes the token of ``claims``."""
    cutoff, family = reply
    if family is not None:
        return True
    return cutoff is not None and claims.issued_at * 1000 <= int(cutoff)


class Revocations:
    """Reads and writes the revocations on ``client``; ``retention`` is the longest token
    lifetime (how long an entry must outlive the tokens it revokes)."""

    def __init__(self, client: redis.Redis, *, retention_seconds: int) -> None:
        self.redis = client
        self.retention_seconds = retention_seconds + 60

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: Base) -> Revocations:
        """Revocations kept as long as the longest token of ``settings`` lives."""
        return cls(
            client, retention_seconds=int(settings.JWT_REFRESH_TOKEN_EXPIRES.total_seconds())
        )

    def is_revoked(self, claims: TokenClaims) -> bool:
        """Whether ``claims``' token was revoked; raises the client's error when Redis
        cannot say (the caller answers 503 or asks PostgreSQL, never admits the token)."""
        return is_revoked(claims, self.redis.execute_command(*check_command(claims)))

    def revoke_user(self, *, user_id: uuid.UUID, username: str, at: float | None = None) -> int:
        """Revoke every token of the user issued until now (or ``at``); the cut-off in ms."""
        cutoff = int((time.time() if at is None else at) * 1000)
        key = revocation_key(username, user_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, _CUTOFF, cutoff)
            pipe.expire(key, self.retention_seconds)
            pipe.execute()
        return cutoff

    def revoke_families(
        self, *, user_id: uuid.UUID, username: str, families: Iterable[uuid.UUID]
    ) -> None:
        """Revoke every token of the sessions ``families``."""
        fields: dict[Any, int] = {family_field(family): 1 for family in families}
        if not fields:
            return
        key = revocation_key(username, user_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.retention_seconds)
            pipe.execute()
