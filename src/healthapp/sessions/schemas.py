"""Request and response models of the token endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from healthapp.mfa.schemas import CODE_DESCRIPTION, SecondFactorCode
from healthapp.schemas_common import RequestModel, ResponseModel


class TokenCreate(RequestModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    otp: SecondFactorCode | None = Field(
        None, description=f"Needed when the account has a second factor. {CODE_DESCRIPTION}"
    )


class TokenRead(ResponseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name)
    expires_in: int


class JsonWebKey(ResponseModel):
    """An Ed25519 public key (RFC 8037)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]
    kid: str


class JsonWebKeySet(ResponseModel):
    keys: list[JsonWebKey]
