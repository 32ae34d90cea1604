"""TOTP codes (RFC 6238: SHA-1, 6 digits, 30-second steps, what every authenticator app
reads) and recovery codes; pure functions, no storage."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import pyotp

ISSUER = "MyHealthApp"
#: Steps either side of now a code is still accepted: 30 s of clock drift each way.
VALID_WINDOW = 1
#: Recovery codes issued at a confirmation; each opens the account once.
RECOVERY_CODE_COUNT = 10
#: Random bytes of each recovery code: 80 bits, shown as four groups of five hex digits.
RECOVERY_CODE_BYTES = 10

# ASCII classes only: ``\d`` would admit other scripts' digits, which no code has.
TOTP_CODE = re.compile(r"[0-9]{6}")
RECOVERY_CODE = re.compile(r"[0-9a-fA-F]{5}(?:-?[0-9a-fA-F]{5}){3}")
#: What a client may send as a code: a TOTP code or a recovery code (dashes optional).
CODE_PATTERN = rf"^(?:{TOTP_CODE.pattern}|{RECOVERY_CODE.pattern})$"


def new_totp_secret() -> str:
    """A new base32 TOTP secret of 160 bits (RFC 4226 §4's recommended length)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, username: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (as a QR code or typed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


@dataclass(frozen=True, slots=True)
class TotpMatch:
    """What a code is, checked against a secret now: the newest step it matches in the
    window, if any, and whether that step is newer than the last one used."""

    step: int | None
    fresh: bool


def match_totp(secret: str, code: str, *, last_used_step: int | None, now: float) -> TotpMatch:
    """Where ``code`` falls in the steps around ``now``: newest first, so that a code that
    happens to match two steps counts as the one not used yet."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current + VALID_WINDOW, current - VALID_WINDOW - 1, -1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return TotpMatch(step=step, fresh=last_used_step is None or step > last_used_step)
    return TotpMatch(step=None, fresh=False)


def is_totp_code(code: str) -> bool:
    """Whether ``code`` has the shape of a TOTP code (else it may be a recovery code)."""
    return TOTP_CODE.fullmatch(code) is not None


def new_recovery_codes() -> list[str]:
    """``RECOVERY_CODE_COUNT`` new recovery codes, as the user is shown them."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        digits = secrets.token_hex(RECOVERY_CODE_BYTES)
        codes.append("-".join(digits[i : i + 5] for i in range(0, len(digits), 5)))
    return codes


def hash_recovery_code(code: str) -> str:
    """The stored form of a recovery code: SHA-256 of its digits, lower-case, no dashes.

    A fast hash is enough: the code is 80 random bits, so no dictionary or brute force
    recovers it from the hash, and a login looks it up by equality, in one indexed read,
    instead of verifying ten slow hashes. It takes no key, so it outlives a change of
    ``SECRET_KEY``, which is how a user whose sealed secret no longer opens gets back in.
    """
    digits = code.replace("-", "").lower()
    return hashlib.sha256(digits.encode("ascii")).hexdigest()
