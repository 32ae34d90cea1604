"""HTTP for the staff second factor (SPEC §14): enrol and confirm a TOTP authenticator, and
the sign-in's second step that the token endpoint asks for.

The enrolment calls carry no token: the password proves who calls, so that a staff
account that must sign in with a second factor can get one. They are rate limited as the
login is, and answered ``Cache-Control: no-store``: they carry secrets.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import current_app
from sqlalchemy.orm import Session

from healthapp.accounts import service as accounts
from healthapp.accounts.models import User
from healthapp.auth.access import public, token_checks, unauthorized
from healthapp.auth.login_limits import login_limits
from healthapp.database import db
from healthapp.mfa import service
from healthapp.mfa.schemas import (
    ConfirmationCreate,
    EnrolmentCreate,
    EnrolmentRead,
    RecoveryCodesRead,
)
from healthapp.mfa.secret_box import SecretBox, secret_box
from healthapp.problems import SECOND_FACTOR_REQUIRED
from healthapp.request_parsing import json_body

bp = APIBlueprint("mfa", __name__, url_prefix="/api/v1/auth/mfa", tag="Authentication")

#: What the answers carrying a secret or recovery codes tell every cache.
_NO_STORE = {"Cache-Control": "no-store"}
_WRONG_CREDENTIALS = "The username or password is wrong."


def _box() -> SecretBox:
    return secret_box(str(current_app.config["SECRET_KEY"] or ""))


def check_second_factor(*, session: Session, user: User, code: str | None) -> None:
    """The sign-in's second step, once the password was right: refuses (401, its own problem
    types) an account that needs a code and gave none that is valid, and, with
    ``STAFF_MFA_REQUIRED``, a staff account that has not enrolled an authenticator."""
    service.check_second_factor(
        session=session,
        user=user,
        code=code,
        box=_box(),
        required=bool(current_app.config["STAFF_MFA_REQUIRED"]),
    )


def _authenticated(username: str, password: str) -> User:
    user = accounts.authenticate(session=db.session, username=username, password=password)
    if user is None:
        raise unauthorized(_WRONG_CREDENTIALS)
    return user


_ENROL_ERRORS: dict[int, str] = {
    400: "Malformed JSON.",
    401: f"The username or password is wrong; or (type {SECOND_FACTOR_REQUIRED}) the"
    " account has an authenticator and `code` is missing, wrong or already used.",
    403: "Patients do not enrol a second factor.",
    409: "Another enrolment of this account is under way.",
    415: "The body is not JSON.",
    429: "Too many attempts (the login's rate limits, or five wrong codes in a row).",
}


@bp.post("/totp")
@login_limits
@bp.output(EnrolmentRead, description="The new authenticator, shown this once.")
@bp.doc(responses=_ENROL_ERRORS)
@public
@json_body(EnrolmentCreate)
def enrol_totp(body: EnrolmentCreate) -> tuple[EnrolmentRead, int, dict[str, str]]:
    """Start enrolling a TOTP authenticator (operators, admins) with the password, and a
    current code if one is enrolled already; it works once confirmed."""
    user = _authenticated(body.username, body.password)
    pending = service.begin_enrolment(session=db.session, user=user, code=body.code, box=_box())
    read = EnrolmentRead(secret=pending.secret, otpauth_uri=pending.otpauth_uri)
    return read, 200, _NO_STORE


_CONFIRM_ERRORS: dict[int, str] = {
    400: "Malformed JSON.",
    401: "The username or password is wrong.",
    403: "Patients do not enrol a second factor.",
    409: "No enrolment is waiting for confirmation, or it expired (10 minutes).",
    # 422 (documented for every body) also answers a code the new authenticator did not show.
    415: "The body is not JSON.",
    429: "Too many attempts (the login's rate limits).",
}


@bp.post("/totp/confirm")
@login_limits
@bp.output(RecoveryCodesRead, description="The recovery codes, shown this once.")
@bp.doc(responses=_CONFIRM_ERRORS)
@public
@json_body(ConfirmationCreate)
def confirm_totp(body: ConfirmationCreate) -> tuple[RecoveryCodesRead, int, dict[str, Any]]:
    """Confirm the authenticator being enrolled with a code it shows: from now on the
    account signs in with its codes. Answers the recovery codes, this once."""
    user = _authenticated(body.username, body.password)
    recovery_codes = service.confirm_enrolment(
        session=db.session,
        user=user,
        code=body.code,
        box=_box(),
        revocations=token_checks().revocations,
    )
    return RecoveryCodesRead(recovery_codes=recovery_codes), 200, _NO_STORE
