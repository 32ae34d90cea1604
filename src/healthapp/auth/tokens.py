"""Access and refresh tokens: EdDSA JWTs made and checked here, and nowhere else.

A token carries ``sub`` (the user's id), ``username``, ``role``, ``typ`` (access or
refresh), ``fam`` (its session: the refresh family a sign-in starts, SPEC §14), ``jti``,
``iat`` (to the millisecond: revocations compare it) and ``exp``, and names its key by
``kid``. Checking one takes only the algorithm this module signs with and only the keys it
was given: ``alg`` other than EdDSA (``none``, HS256 keyed with a public key), an unknown
``kid``, or a header pointing elsewhere for keys (``jku``, ``x5u``, ``jwk``: never read) is a
forged token. Pure: no Flask, no store.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from healthapp.auth.keys import ALGORITHM, KeySet
from healthapp.auth.policy import Principal
from healthapp.domain.roles import Role

ISSUER = "healthapp"
#: Clock difference tolerated between the API that signed a token and the one checking it.
LEEWAY_SECONDS = 5
_REQUIRED = ["exp", "iat", "iss", "sub", "jti", "typ", "fam", "username", "role"]


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


class InvalidToken(Exception):
    """The token is forged, altered, expired or of the other type; why is not disclosed."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    principal: Principal
    token_type: TokenType
    family: uuid.UUID
    token_id: str
    issued_at: float
    expires_at: float


class TokenIssuer:
    """Mints tokens with the signing key of ``keys``."""

    def __init__(
        self, keys: KeySet, *, access_lifetime: timedelta, refresh_lifetime: timedelta
    ) -> None:
        if keys.signing is None or keys.signing_kid is None:
            raise ValueError("a key set without a signing key cannot mint tokens")
        self.keys = keys
        self._key = keys.signing
        self._kid = keys.signing_kid
        self.lifetimes = {TokenType.ACCESS: access_lifetime, TokenType.REFRESH: refresh_lifetime}

    def issue(
        self,
        principal: Principal,
        *,
        token_type: TokenType,
        family: uuid.UUID,
        now: float | None = None,
    ) -> tuple[str, TokenClaims]:
        """A signed token of ``token_type`` for ``principal`` in session ``family``."""
        issued_at = round(time.time() if now is None else now, 3)
        expires_at = int(issued_at + self.lifetimes[token_type].total_seconds())
        claims = TokenClaims(
            principal=principal,
            token_type=token_type,
            family=family,
            token_id=uuid.uuid4().hex,
            issued_at=issued_at,
            expires_at=expires_at,
        )
        payload = {
            "iss": ISSUER,
            "sub": str(principal.id),
            "username": principal.username,
            "role": principal.role.value,
            "typ": token_type.value,
            "fam": str(family),
            "jti": claims.token_id,
            "iat": issued_at,
            "exp": expires_at,
        }
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})
        return token, claims


class TokenVerifier:
    """Checks tokens against the verifying keys of ``keys``."""

    def __init__(self, keys: KeySet) -> None:
        self._keys: dict[str, Ed25519PublicKey] = dict(keys.verifying)

    def verify(self, token: str, token_type: TokenType) -> TokenClaims:
        """The claims of ``token``; ``InvalidToken`` unless it is a whole, unexpired token
        of ``token_type`` signed by one of the keys."""
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None or header.get("alg") != ALGORITHM:
                raise InvalidToken
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED},
            )
            if payload["typ"] != token_type.value:
                raise InvalidToken
            return TokenClaims(
                principal=Principal(
                    id=uuid.UUID(payload["sub"]),
                    username=_text(payload["username"]),
                    role=Role(payload["role"]),
                ),
                token_type=token_type,
                family=uuid.UUID(payload["fam"]),
                token_id=_text(payload["jti"]),
                issued_at=float(payload["iat"]),
                expires_at=float(payload["exp"]),
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise InvalidToken from exc


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not a string")
    return value
