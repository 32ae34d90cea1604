"""The outbox table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from healthapp.orm import Base


class ReportOutbox(Base):
    """One row per change to a user's report, written in the changing transaction.

    No foreign key: an entry must outlive the user it names, so that a deleted user's
    report is removed from Redis too.
    """

    __tablename__ = "report_outbox"
    __table_args__ = (Index("ix_report_outbox_user", "user_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    username: Mapped[str] = mapped_column(String(32))
    enqueued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    #: The API request that made the change (its ``X-Request-ID``), so the sync's log
    #: lines can be traced back to the upload; ``None`` outside a request.
    request_id: Mapped[str | None] = mapped_column(String(64))
