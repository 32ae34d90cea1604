"""What the second factor does: enrol and confirm an authenticator, check a sign-in's code,
reset an account's factor.

A code is accepted once: a TOTP code only if its time step is newer than the last one
accepted, a recovery code only while unused. Wrong codes are counted per account; after
``MAX_WRONG_CODES`` in a row each further try waits ``LOCKOUT`` (a guesser who has the
password gets a few hundred guesses of a million a day, not one per request the rate limits
let through). The outcome of a check is committed before a refusal is raised, so that a
wrong code is counted and a used one stays used.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from sqlalchemy import delete, func, update
from sqlalchemy.orm import Session

from healthapp.accounts.models import User
from healthapp.audit import service as audit
from healthapp.auth import token_store
from healthapp.auth.policy import STAFF
from healthapp.auth.revocation import Revocations
from healthapp.domain.roles import Role
from healthapp.errors import (
    Conflict,
    InvalidInput,
    NotAllowed,
    SecondFactorNotEnrolled,
    SecondFactorRequired,
    TooManyAttempts,
)
from healthapp.mfa import codes
from healthapp.mfa.models import RecoveryCode, TotpFactor
from healthapp.mfa.secret_box import SecretBox, SecretUnreadable
from healthapp.request_context import Actor, current_request_id
from healthapp.unit_of_work import UNIQUE, unit_of_work

#: How long an authenticator being enrolled waits for its confirmation.
PENDING_LIFETIME = timedelta(minutes=10)
#: Wrong codes in a row before each further try must wait ``LOCKOUT``.
MAX_WRONG_CODES = 5
LOCKOUT = timedelta(minutes=15)

_log = structlog.get_logger("healthapp.mfa")

_CODE_NEEDED = (
    "This account signs in with a second factor: send the code its authenticator shows,"
    " or an unused recovery code."
)
_CODE_REFUSED = (
    "The second-factor code is wrong or was already used; wait for the authenticator's next code."
)
_ENROL_FIRST = (
    "Staff accounts sign in with a second factor: enrol an authenticator first"
    " (POST /api/v1/auth/mfa/totp with the username and password)."
)
_ENROLMENT_RACE = {
    ("pk_totp_factors", UNIQUE): partial(
        Conflict, "Another enrolment of this account is under way; try again."
    )
}


@dataclass(frozen=True, slots=True)
class PendingAuthenticator:
    """A new authenticator's secret, as the user types it or scans it; shown once."""

    secret: str
    otpauth_uri: str


def get(*, session: Session, user_id: uuid.UUID) -> TotpFactor | None:
    """The user's authenticator (confirmed, being enrolled, or both), if any."""
    return session.get(TotpFactor, user_id)


def is_enrolled(factor: TotpFactor | None) -> bool:
    """Whether ``factor`` has a confirmed authenticator that guards its account."""
    return factor is not None and factor.secret is not None


def check_second_factor(
    *, session: Session, user: User, code: str | None, box: SecretBox, required: bool
) -> None:
    """Refuse a sign-in whose password was right but that lacks the second factor needed.

    An account with a confirmed authenticator always needs a code, whatever its role now;
    with ``required`` (``STAFF_MFA_REQUIRED``) a staff account without one cannot sign in
    until it enrols one.
    """
    if not is_enrolled(get(session=session, user_id=user.id)):
        if required and Role(user.role) in STAFF:
            raise SecondFactorNotEnrolled(_ENROL_FIRST)
        return
    if code is None:
        raise SecondFactorRequired(_CODE_NEEDED)
    _accept_code(session, user, code, box)


def begin_enrolment(
    *, session: Session, user: User, code: str | None, box: SecretBox
) -> PendingAuthenticator:
    """A new authenticator for a staff ``user``, waiting for its confirmation.

    An account that has a confirmed authenticator proves it first (a code, or a recovery
    code if the authenticator is lost): a password alone never replaces it.
    """
    _require_staff(user)
    if is_enrolled(get(session=session, user_id=user.id)):
        if code is None:
            raise SecondFactorRequired(
                "This account has an authenticator: replacing it needs its current code"
                " or an unused recovery code."
            )
        _accept_code(session, user, code, box)
    secret = codes.new_totp_secret()
    with unit_of_work(session, refusals=_ENROLMENT_RACE):
        factor = _locked(session, user.id)
        if factor is None:
            factor = TotpFactor(user_id=user.id)
            session.add(factor)
        factor.pending_secret = box.seal(secret, user_id=user.id)
        factor.pending_since = datetime.now(UTC)
        _audit(session, "mfa.enrol", user, change="begin")
    return PendingAuthenticator(
        secret=secret, otpauth_uri=codes.provisioning_uri(secret, username=user.username)
    )


def confirm_enrolment(
    *,
    session: Session,
    user: User,
    code: str,
    box: SecretBox,
    revocations: Revocations | None,
) -> list[str]:
    """Make the authenticator being enrolled the account's, proven by a code it shows; the
    new recovery codes, returned this once (earlier ones stop working). One that replaces
    an authenticator signs the account out everywhere (``revocations``): sessions begun
    with the old one, perhaps by whoever took it, end with it."""
    _require_staff(user)
    now = time.time()
    with unit_of_work(session):
        factor = _locked(session, user.id)
        if factor is None or factor.pending_secret is None or factor.pending_since is None:
            raise Conflict(
                "No authenticator is waiting for confirmation; start with"
                " POST /api/v1/auth/mfa/totp."
            )
        if factor.pending_since + PENDING_LIFETIME < datetime.fromtimestamp(now, UTC):
            raise Conflict("The enrolment expired; start it again.")
        try:
            secret = box.open(factor.pending_secret, user_id=user.id)
        except SecretUnreadable:
            raise Conflict("The enrolment can no longer be read; start it again.") from None
        match = codes.match_totp(secret, code, last_used_step=None, now=now)
        if match.step is None:
            raise InvalidInput(
                "The code is not one the new authenticator shows now.",
                errors=[{"loc": ["code"], "msg": "does not match the authenticator"}],
            )
        change = "replace" if factor.secret is not None else "create"
        factor.secret, factor.pending_secret, factor.pending_since = (
            factor.pending_secret,
            None,
            None,
        )
        factor.confirmed_at = datetime.fromtimestamp(now, UTC)
        factor.last_used_step = match.step  # the confirming code does not also sign in
        factor.failed_attempts, factor.last_failed_at = 0, None
        recovery_codes = codes.new_recovery_codes()
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        session.add_all(
            RecoveryCode(user_id=user.id, code_hash=codes.hash_recovery_code(recovery_code))
            for recovery_code in recovery_codes
        )
        _audit(session, "mfa.enrol", user, change=change)
        if change == "replace":
            _revoke_tokens(session, revocations, user)
    return recovery_codes


def reset(*, session: Session, user: User, revocations: Revocations | None) -> bool:
    """Remove the user's authenticator and recovery codes (the user lost both), and end
    every session of theirs (``revocations``); whether there was one. The user enrols again
    with the password alone."""
    with unit_of_work(session):
        removed = session.execute(
            delete(TotpFactor).where(TotpFactor.user_id == user.id).returning(TotpFactor.user_id)
        ).first()
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        if removed is not None:
            audit.record(
                session=session,
                action="mfa.reset",
                subjects=[audit.Subject(user.id, user.username)],
            )
            _revoke_tokens(session, revocations, user)
    return removed is not None


def _revoke_tokens(session: Session, revocations: Revocations | None, user: User) -> None:
    ended = token_store.revoke_user(
        session=session,
        revocations=revocations,
        user_id=user.id,
        username=user.username,
        reason=token_store.SECOND_FACTOR,
    )
    audit.record(
        session=session,
        action="auth.revoked",
        subjects=[
            audit.Subject(
                user.id, user.username, {"reason": token_store.SECOND_FACTOR, "sessions": ended}
            )
        ],
    )


# Checking a code -----------------------------------------------------------------------


def _accept_code(session: Session, user: User, code: str, box: SecretBox) -> None:
    """Accept ``code`` for ``user``'s confirmed authenticator once, or raise; the outcome
    (a step or a recovery code used, a wrong code counted) is committed either way."""
    now = time.time()
    refusal: Exception | None = None
    with unit_of_work(session):
        factor = _locked(session, user.id)
        if factor is None or factor.secret is None:  # reset meanwhile
            refusal = SecondFactorRequired(_CODE_REFUSED)
        elif (wait := _lockout_left(factor, now)) > 0:
            refusal = TooManyAttempts(
                "Too many wrong second-factor codes in a row; try again later.",
                retry_after=wait,
            )
        elif _code_accepted(session, user, factor, factor.secret, code, box, now):
            factor.failed_attempts, factor.last_failed_at = 0, None
        else:
            factor.failed_attempts += 1
            factor.last_failed_at = datetime.fromtimestamp(now, UTC)
            refusal = SecondFactorRequired(_CODE_REFUSED)
    if refusal is not None:
        raise refusal


def _lockout_left(factor: TotpFactor, now: float) -> int:
    """Seconds before ``factor`` takes another code (0: it takes one now)."""
    if factor.failed_attempts < MAX_WRONG_CODES or factor.last_failed_at is None:
        return 0
    until = factor.last_failed_at + LOCKOUT
    return max(0, int((until - datetime.fromtimestamp(now, UTC)).total_seconds()) + 1)


def _code_accepted(
    session: Session,
    user: User,
    factor: TotpFactor,
    sealed: bytes,
    code: str,
    box: SecretBox,
    now: float,
) -> bool:
    """Whether ``code`` is a fresh code of the authenticator sealed in ``sealed`` or an
    unused recovery code; marks it used if so."""
    if not codes.is_totp_code(code):
        return _recovery_code_used(session, user, code)
    try:
        secret = box.open(sealed, user_id=user.id)
    except SecretUnreadable:
        # SECRET_KEY changed since the enrolment: only a recovery code opens the account.
        _log.warning("second-factor secret does not open with the current key", user=user.id)
        return False
    match = codes.match_totp(secret, code, last_used_step=factor.last_used_step, now=now)
    if match.step is None or not match.fresh:
        return False
    factor.last_used_step = match.step
    return True


def _recovery_code_used(session: Session, user: User, code: str) -> bool:
    """Mark an unused recovery code of ``user`` used; whether ``code`` was one."""
    used = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == codes.hash_recovery_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=func.now())
        .returning(RecoveryCode.code_hash)
    ).first()
    if used is None:
        return False
    _audit(session, "mfa.recovery_code_use", user)
    return True


# Helpers -------------------------------------------------------------------------------


def _require_staff(user: User) -> None:
    if Role(user.role) not in STAFF:
        raise NotAllowed("Only operators and admins enrol a second factor.")


def _locked(session: Session, user_id: uuid.UUID) -> TotpFactor | None:
    """The user's factor row, read anew and locked until the transaction ends: two sign-ins
    with the same code are taken one after the other, and only the first succeeds."""
    return session.get(TotpFactor, user_id, with_for_update=True, populate_existing=True)


def _audit(session: Session, action: str, user: User, **details: str) -> None:
    """Record what ``user`` did to their own second factor (the password proved who they
    are; these calls carry no token)."""
    actor = Actor(
        id=user.id, username=user.username, role=user.role, request_id=current_request_id()
    )
    audit.record(
        session=session,
        action=action,
        subjects=[audit.Subject(user.id, user.username, details)],
        actor=actor,
    )
