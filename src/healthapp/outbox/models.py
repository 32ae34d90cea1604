"""The outbox table, and the sync watermark beside it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, SmallInteger, String, Uuid, text
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


class SyncWatermark(Base):
    """How far the sync has brought Redis: one row, its ``seq`` the last batch committed.

    Every sync batch (and every full rebuild) advances it in the transaction that deletes
    the outbox rows it synced, and writes the same number to Redis after the reports: a
    Redis that comes back holding a lower one lost writes whose outbox rows are gone, and
    the sync rebuilds every report (``healthapp.sync.watermark``).
    """

    __tablename__ = "sync_watermark"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    advanced_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
