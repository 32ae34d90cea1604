"""Tables of the second factor: each account's authenticator and its recovery codes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from healthapp.orm import Base


class TotpFactor(Base):
    """A user's TOTP authenticator: the confirmed one, and one being enrolled (``pending_``).

    Both secrets are sealed (``healthapp.mfa.secret_box``): a copy of the table, or of a
    backup, gives no one the codes. A new authenticator waits beside the confirmed one, which
    keeps guarding the account until the new one is confirmed.
    """

    __tablename__ = "totp_factors"
    __table_args__ = (
        CheckConstraint("(secret IS NULL) = (confirmed_at IS NULL)", name="confirmed_secret"),
        CheckConstraint(
            "(pending_secret IS NULL) = (pending_since IS NULL)", name="pending_secret"
        ),
        CheckConstraint("failed_attempts >= 0", name="failed_attempts_counted"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The time step of the last code accepted: a code of this step or an earlier one is
    #: refused, so a code overheard or sent twice works once.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    pending_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Wrong codes in a row since the last good one, and when the last came.
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RecoveryCode(Base):
    """One recovery code of a user, by its SHA-256 hash; each opens the account once."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
