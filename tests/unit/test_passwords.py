"""argon2id password hashing (SPEC §4)."""

from __future__ import annotations

from healthapp.auth.passwords import hash_password, verify_password


def test_hash_is_argon2id_and_salted() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert "correct horse" not in first
    assert first != second


def test_verify_accepts_only_the_password() -> None:
    stored = hash_password("correct horse")
    assert verify_password(stored, "correct horse") is True
    assert verify_password(stored, "correct horse ") is False
    assert verify_password(stored, "") is False


def test_verify_survives_a_corrupt_hash() -> None:
    assert verify_password("not-a-hash", "anything") is False
    assert verify_password("$argon2id$v=19$m=1,t=1,p=1$broken", "anything") is False
