"""The second factor's storage: secrets sealed at rest, codes hashed, rows gone with the user."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, text

from healthapp.domain.roles import Role
from healthapp.mfa import codes
from healthapp.mfa.secret_box import SecretBox, SecretUnreadable
from tests.factories import ApiClient
from tests.mfa.enrolment import begin, code_at, enrol, login


def _row(engine: Engine, user_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT * FROM totp_factors WHERE user_id = :id"), {"id": user_id}
        ).one_or_none()


def test_the_secret_is_not_readable_in_the_table(api: ApiClient, engine: Engine) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    pending = begin(api, enrolled.user, code_at(enrolled.secret, 1)).json["secret"]
    row = _row(engine, enrolled.user.id)
    raw_secret = base64.b32decode(enrolled.secret)
    for secret, sealed in ((enrolled.secret, row.secret), (pending, row.pending_secret)):
        stored = bytes(sealed)
        assert secret.encode() not in stored
        assert secret.lower().encode() not in stored
        assert base64.b32decode(secret) not in stored
    assert raw_secret not in bytes(row.secret)
    # Nor is it anywhere else in the database's text.
    with engine.connect() as conn:
        dump = conn.execute(
            text(
                "SELECT string_agg(t::text, ' ') FROM ("
                " SELECT row_to_json(f)::text AS t FROM totp_factors f"
                " UNION ALL SELECT row_to_json(r)::text FROM recovery_codes r"
                " UNION ALL SELECT row_to_json(a)::text FROM audit_events a) rows"
            )
        ).scalar_one()
    assert enrolled.secret not in dump
    assert pending not in dump


def test_recovery_codes_are_stored_as_hashes(api: ApiClient, engine: Engine) -> None:
    enrolled = enrol(api, api.user(Role.OPERATOR))
    with engine.connect() as conn:
        stored = set(
            conn.execute(
                text("SELECT code_hash FROM recovery_codes WHERE user_id = :id"),
                {"id": enrolled.user.id},
            ).scalars()
        )
    assert stored == {codes.hash_recovery_code(code) for code in enrolled.recovery_codes}
    for code in enrolled.recovery_codes:
        assert code not in " ".join(stored)
        assert code.replace("-", "") not in " ".join(stored)


def test_a_sealed_secret_opens_only_for_its_user_and_key() -> None:
    box, user, other = SecretBox("k" * 40), uuid.uuid4(), uuid.uuid4()
    sealed = box.seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", user_id=user)
    assert box.open(sealed, user_id=user) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert box.seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", user_id=user) != sealed  # fresh nonce
    with pytest.raises(SecretUnreadable):
        box.open(sealed, user_id=other)  # copied onto another account's row
    with pytest.raises(SecretUnreadable):
        SecretBox("another key, " + "x" * 30).open(sealed, user_id=user)
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SecretUnreadable):
        box.open(altered, user_id=user)
    with pytest.raises(SecretUnreadable):
        box.open(b"\x02" + sealed[1:], user_id=user)
    with pytest.raises(SecretUnreadable):
        box.open(b"", user_id=user)


def test_a_changed_secret_key_leaves_the_recovery_codes_working(
    app: Any, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    monkeypatch.setitem(app.config, "SECRET_KEY", "a rotated secret key " + "r" * 20)
    refused = login(api, enrolled.user, code_at(enrolled.secret, 1))
    assert refused.status_code == 401
    assert login(api, enrolled.user, enrolled.recovery_codes[0]).status_code == 200
    # ...and with one, the user enrols an authenticator sealed with the new key.
    renewed = enrol(api, enrolled.user, code=enrolled.recovery_codes[1])
    assert login(api, enrolled.user, code_at(renewed.secret, 1)).status_code == 200


def test_deleting_the_user_deletes_the_factor(api: ApiClient, engine: Engine) -> None:
    enrolled = enrol(api, api.user(Role.OPERATOR))
    assert api.delete(f"/api/v1/users/{enrolled.user.id}", as_=enrolled.user).status_code == 204
    assert _row(engine, enrolled.user.id) is None
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM recovery_codes WHERE user_id = :id"),
            {"id": enrolled.user.id},
        ).scalar_one()
    assert left == 0


def test_codes_match_the_steps_around_now() -> None:
    secret = codes.new_totp_secret()
    assert len(base64.b32decode(secret)) == 20  # 160 bits
    import pyotp

    totp, now = pyotp.TOTP(secret), 1_800_000_015.0
    step = totp.timecode(now)
    for offset in (-1, 0, 1):
        match = codes.match_totp(
            secret, totp.at(now, counter_offset=offset), last_used_step=None, now=now
        )
        assert match == codes.TotpMatch(step=step + offset, fresh=True)
    for offset in (-2, 2):
        code = totp.at(now, counter_offset=offset)
        if code not in {totp.at(now, counter_offset=o) for o in (-1, 0, 1)}:
            assert codes.match_totp(secret, code, last_used_step=None, now=now).step is None
    used = codes.match_totp(secret, totp.at(now), last_used_step=step, now=now)
    assert used == codes.TotpMatch(step=step, fresh=False)


def test_recovery_codes_are_random_and_hash_alike_however_typed() -> None:
    issued = codes.new_recovery_codes()
    assert len(issued) == codes.RECOVERY_CODE_COUNT == len(set(issued))
    code = issued[0]
    assert codes.RECOVERY_CODE.fullmatch(code)
    assert codes.hash_recovery_code(code) == codes.hash_recovery_code(code.replace("-", "").upper())
    assert codes.hash_recovery_code(code) != codes.hash_recovery_code(issued[1])
