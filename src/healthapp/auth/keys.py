"""The keys that sign and verify tokens (SPEC §14): Ed25519, each named by its thumbprint.

EdDSA over Ed25519 (RFC 8037) rather than ES256 or RS256: its signatures are deterministic
(ECDSA needs a fresh random nonce per signature, and a weak one leaks the key), it has one
curve and no parameters to get wrong, its keys are 32 bytes and a token's signature 64
(RS256: 256), and a signature is checked in tens of microseconds. Every key is named by its
RFC 7638 JWK thumbprint, the ``kid`` a token's header carries.

The Core API holds the private key (``JWT_PRIVATE_KEY``) and publishes the public keys at
``/.well-known/jwks.json``; the Reports API is given public keys only (``JWT_PUBLIC_KEYS``)
and so cannot mint a token. Rotation: a new private key signs; the old public key stays in
``JWT_PUBLIC_KEYS`` and verifies the tokens it signed until they expire. Outside production,
a key pair made for the instance under ``INSTANCE_PATH`` is used when none is set: nothing
in the repository can sign a token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from healthapp.config import Base, ConfigurationError, Production

ALGORITHM = "EdDSA"
#: The instance's development key pair (never used in production).
PRIVATE_KEY_FILE = "jwt-private-key.pem"
PUBLIC_KEY_FILE = "jwt-public-key.pem"
_PUBLIC_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----[^-]+-----END PUBLIC KEY-----", re.MULTILINE)


@dataclass(frozen=True)
class KeySet:
    """The key that signs (``None`` on the Reports API) and every key that verifies."""

    verifying: Mapping[str, Ed25519PublicKey]
    signing: Ed25519PrivateKey | None = None
    signing_kid: str | None = None

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set (RFC 7517), the signing key's first."""
        ordered = sorted(self.verifying.items(), key=lambda item: item[0] != self.signing_kid)
        return {"keys": [public_jwk(key) | {"kid": kid} for kid, key in ordered]}


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """``key`` as an OKP JWK (RFC 8037), without its ``kid``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "alg": ALGORITHM, "use": "sig"}


def thumbprint(key: Ed25519PublicKey) -> str:
    """The RFC 7638 thumbprint of ``key``: SHA-256 of its required members, in order."""
    jwk = public_jwk(key)
    required = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":")
    )
    return _b64(hashlib.sha256(required.encode()).digest())


def generate_key_pair() -> tuple[str, str]:
    """A new Ed25519 key pair as PEM text: (private PKCS #8, public SubjectPublicKeyInfo)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return private_pem, public_pem(private.public_key())


def public_pem(key: Ed25519PublicKey) -> str:
    """``key`` as PEM text."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_private_key(pem: str, *, setting: str = "JWT_PRIVATE_KEY") -> Ed25519PrivateKey:
    """The Ed25519 private key in ``pem``; a message naming ``setting`` if it is not one."""
    try:
        key = serialization.load_pem_private_key(_unescaped(pem).encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigurationError(f"{setting} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{setting} must be an Ed25519 key (tokens are EdDSA)")
    return key


def load_public_keys(pem: str, *, setting: str = "JWT_PUBLIC_KEYS") -> list[Ed25519PublicKey]:
    """Every Ed25519 public key in ``pem`` (PEM blocks one after another)."""
    blocks = _PUBLIC_PEM.findall(_unescaped(pem))
    if not blocks:
        raise ConfigurationError(f"{setting} holds no PEM public key")
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block.encode())
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigurationError(f"{setting} holds a PEM block that is not a key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError(f"{setting} must hold Ed25519 keys (tokens are EdDSA)")
        keys.append(key)
    return keys


def signing_keys(settings: Base) -> KeySet:
    """The Core API's keys: its private key signs; it and ``JWT_PUBLIC_KEYS`` verify."""
    if settings.JWT_PRIVATE_KEY is not None:
        private = load_private_key(settings.JWT_PRIVATE_KEY.get_secret_value())
    elif isinstance(settings, Production):
        raise ConfigurationError("JWT_PRIVATE_KEY must be set in production")
    else:
        private = load_private_key(
            development_key_pair(Path(settings.INSTANCE_PATH))[0].read_text(),
            setting=PRIVATE_KEY_FILE,
        )
    own = private.public_key()
    verifying = {thumbprint(key): key for key in _configured_public_keys(settings)}
    verifying[thumbprint(own)] = own
    return KeySet(verifying=verifying, signing=private, signing_kid=thumbprint(own))


def verifying_keys(settings: Base) -> KeySet:
    """The Reports API's keys: public keys only, so it cannot mint a token.

    Production takes them from ``JWT_PUBLIC_KEYS`` and refuses a ``JWT_PRIVATE_KEY``: the
    read side must not hold it. Elsewhere, without ``JWT_PUBLIC_KEYS``, the public half of
    ``JWT_PRIVATE_KEY`` or of the instance's key pair (the one the Core API signs with).
    """
    if isinstance(settings, Production):
        if settings.JWT_PRIVATE_KEY is not None:
            raise ConfigurationError(
                "JWT_PRIVATE_KEY must not be given to the Reports API: it verifies tokens "
                "with JWT_PUBLIC_KEYS and mints none"
            )
        if not settings.JWT_PUBLIC_KEYS:
            raise ConfigurationError("JWT_PUBLIC_KEYS must be set in production")
    keys = _configured_public_keys(settings)
    if not keys and settings.JWT_PRIVATE_KEY is not None:
        keys = [load_private_key(settings.JWT_PRIVATE_KEY.get_secret_value()).public_key()]
    if not keys:
        public_file = development_key_pair(Path(settings.INSTANCE_PATH))[1]
        keys = load_public_keys(public_file.read_text(), setting=PUBLIC_KEY_FILE)
    return KeySet(verifying={thumbprint(key): key for key in keys})


def _configured_public_keys(settings: Base) -> list[Ed25519PublicKey]:
    return load_public_keys(settings.JWT_PUBLIC_KEYS) if settings.JWT_PUBLIC_KEYS else []


def development_key_pair(instance: Path) -> tuple[Path, Path]:
    """The instance's key pair files, made on first use (the private one readable by its
    owner only). Several processes starting at once make one pair: the first to create the
    private key's file writes both; the others wait for the public one."""
    private_path, public_path = instance / PRIVATE_KEY_FILE, instance / PUBLIC_KEY_FILE
    if public_path.exists():
        return private_path, public_path
    instance.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _wait_for(public_path)
        return private_path, public_path
    private_pem, public = generate_key_pair()
    with os.fdopen(descriptor, "w") as private_file:
        private_file.write(private_pem)
    partial = public_path.with_suffix(".tmp")
    partial.write_text(public)
    partial.replace(public_path)  # atomic: a reader sees the whole key or none
    return private_path, public_path


def _wait_for(path: Path, timeout_seconds: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout_seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"{path.name} was not written; remove the instance's key files"
            )
        time.sleep(0.05)


def _unescaped(pem: str) -> str:
    """PEM text as given in an environment variable or ``.env`` line, where its line breaks
    may be written ``\\n``."""
    return pem.replace("\\n", "\n")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
