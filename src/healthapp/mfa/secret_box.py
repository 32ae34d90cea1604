"""Sealing TOTP secrets at rest: AES-256-GCM under a key derived from ``SECRET_KEY``.

The key is HKDF-SHA256 of ``SECRET_KEY`` with a label of its own, so it is used for
nothing else. Each sealed secret is a version byte, a random 96-bit nonce and the
ciphertext with its tag; the user's id is authenticated with it, so a sealed secret copied
onto another account's row does not open there. Changing ``SECRET_KEY`` makes every sealed
secret unreadable: those users sign in with a recovery code and enrol again
(docs/operations.md).
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_BYTES = 12
_KEY_LABEL = b"healthapp mfa totp-secret v1"


class SecretUnreadable(Exception):
    """A sealed secret that this key did not seal, or that was altered."""


class SecretBox:
    """Seals and opens the TOTP secrets of accounts with one key."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is needed to seal second-factor secrets")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_LABEL).derive(
            secret_key.encode("utf-8")
        )
        self._aead = AESGCM(key)

    def seal(self, secret: str, *, user_id: uuid.UUID) -> bytes:
        """``secret`` encrypted and bound to ``user_id``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode("ascii"), _VERSION + user_id.bytes)
        return _VERSION + nonce + sealed

    def open(self, sealed: bytes, *, user_id: uuid.UUID) -> str:
        """The secret ``seal`` sealed for ``user_id``; ``SecretUnreadable`` for anything else."""
        version, nonce, ciphertext = (
            sealed[:1],
            sealed[1 : 1 + _NONCE_BYTES],
            sealed[1 + _NONCE_BYTES :],
        )
        if version != _VERSION:
            raise SecretUnreadable("unknown sealed-secret version")
        try:
            return self._aead.decrypt(nonce, ciphertext, version + user_id.bytes).decode("ascii")
        except (InvalidTag, ValueError):
            raise SecretUnreadable("the sealed secret does not open with this key") from None


@lru_cache(maxsize=4)
def secret_box(secret_key: str) -> SecretBox:
    """The box of ``secret_key`` (derived once per key)."""
    return SecretBox(secret_key)
