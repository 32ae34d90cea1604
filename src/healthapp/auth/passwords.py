"""argon2id password hashing; what a password may be is the accounts' policy."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, has_app_context


@cache
def _hasher(fast: bool) -> PasswordHasher:
    if fast:  # tests only: same algorithm, cheap parameters
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()  # argon2id with RFC 9106's low-memory profile


def _current_hasher() -> PasswordHasher:
    fast = has_app_context() and bool(current_app.config.get("PASSWORD_HASH_FAST"))
    return _hasher(fast)


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _current_hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``."""
    try:
        return _current_hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


#: Verified against when the username is unknown, so both failures take the same time.
_DUMMY_HASH: dict[bool, str] = {}


def verify_against_dummy(password: str) -> None:
    """Spend the time a real verification takes; the result is always a failure."""
    fast = has_app_context() and bool(current_app.config.get("PASSWORD_HASH_FAST"))
    if fast not in _DUMMY_HASH:
        _DUMMY_HASH[fast] = _hasher(fast).hash("dummy-password-never-matches")
    verify_password(_DUMMY_HASH[fast], password)
