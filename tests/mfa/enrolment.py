"""Enrolling an authenticator over HTTP and computing its codes, for the second-factor tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyotp

from tests.factories import PASSWORD, ApiClient, TestUser

TOKEN = "/api/v1/auth/token"
ENROL = "/api/v1/auth/mfa/totp"
CONFIRM = "/api/v1/auth/mfa/totp/confirm"


def code_at(secret: str, offset: int = 0) -> str:
    """The code of ``secret`` ``offset`` time steps from now (the window accepts -1 to 1)."""
    return pyotp.TOTP(secret).at(time.time(), counter_offset=offset)


def wrong_code(secret: str) -> str:
    """A well-formed code that no step near now of ``secret`` shows."""
    near = {code_at(secret, offset) for offset in range(-3, 4)}
    return next(code for code in ("000000", "111111", "222222") if code not in near)


@dataclass(frozen=True)
class Enrolled:
    """A staff user with a confirmed authenticator."""

    user: TestUser
    secret: str
    recovery_codes: list[str]


def login(api: ApiClient, user: TestUser, otp: str | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"username": user.username, "password": PASSWORD, **extra}
    if otp is not None:
        body["otp"] = otp
    return api.post(TOKEN, json=body)


def begin(api: ApiClient, user: TestUser, code: str | None = None) -> Any:
    body: dict[str, Any] = {"username": user.username, "password": PASSWORD}
    if code is not None:
        body["code"] = code
    return api.post(ENROL, json=body)


def confirm(api: ApiClient, user: TestUser, code: str) -> Any:
    return api.post(CONFIRM, json={"username": user.username, "password": PASSWORD, "code": code})


def enrol(api: ApiClient, user: TestUser, code: str | None = None) -> Enrolled:
    """Enrol (or, with a current ``code``, replace) ``user``'s authenticator and confirm it
    with the code it shows now; the next step's code is the first one that signs in."""
    started = begin(api, user, code)
    assert started.status_code == 200, started.json
    secret = started.json["secret"]
    confirmed = confirm(api, user, code_at(secret))
    assert confirmed.status_code == 200, confirmed.json
    return Enrolled(user=user, secret=secret, recovery_codes=confirmed.json["recovery_codes"])
