"""Request and response models of the second-factor endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from healthapp.accounts.passwords import MAX_PASSWORD_LENGTH
from healthapp.mfa.codes import CODE_PATTERN
from healthapp.schemas_common import RequestModel, ResponseModel

#: A code of the second factor: six digits from the authenticator, or a recovery code.
SecondFactorCode = Annotated[
    str, StringConstraints(min_length=6, max_length=23, pattern=CODE_PATTERN)
]
CODE_DESCRIPTION = (
    "The 6-digit code the authenticator shows now, or an unused recovery code"
    " (xxxxx-xxxxx-xxxxx-xxxxx). Each is accepted once."
)
Username = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH)]


class EnrolmentCreate(RequestModel):
    """Start enrolling an authenticator: the password, and a code of the current second
    factor when the account already has one (a password alone never replaces it)."""

    username: Username
    password: Password
    code: SecondFactorCode | None = Field(
        None, description=f"Needed when the account has an authenticator. {CODE_DESCRIPTION}"
    )


class EnrolmentRead(ResponseModel):
    """The new authenticator's secret, shown this once; it works once confirmed."""

    secret: str = Field(description="The base32 TOTP secret, to type into an authenticator.")
    otpauth_uri: str = Field(description="The same as an otpauth:// URI, to show as a QR code.")


class ConfirmationCreate(RequestModel):
    """Confirm the authenticator being enrolled with a code it shows."""

    username: Username
    password: Password
    code: Annotated[
        str,
        StringConstraints(pattern=r"^[0-9]{6}$"),
        Field(description="The 6-digit code the new authenticator shows now."),
    ]


class RecoveryCodesRead(ResponseModel):
    """The recovery codes, shown this once; each opens the account once instead of a code."""

    recovery_codes: list[str]
