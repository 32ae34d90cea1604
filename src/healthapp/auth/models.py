"""The table of sessions: one row per sign-in, the refresh family of SPEC §14."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from healthapp.orm import Base


class TokenFamily(Base):
    """A session: the tokens one sign-in and its refreshes gave out.

    ``refresh_token_id`` is the ``jti`` of the one refresh token that may be used next;
    any other of the family presented again is a replay, and revokes the family. No foreign
    key to ``users``: a deleted user's sessions stay, revoked, until they expire, so the
    revocations can be written to Redis again from here (``token_store.republish``).
    """

    __tablename__ = "token_families"
    __table_args__ = (
        Index("ix_token_families_user_id", "user_id"),
        Index("ix_token_families_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    username: Mapped[str] = mapped_column(String(32))
    refresh_token_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
