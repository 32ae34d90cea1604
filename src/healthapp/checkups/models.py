"""Tables of the check-ups domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from healthapp.orm import Base


class Checkup(Base):
    __tablename__ = "checkups"
    __table_args__ = (
        # One user's check-ups newest first, optionally within a date range.
        Index("ix_checkups_user_taken", "user_id", text("taken_at DESC"), text("id DESC")),
        # The same, restricted to one check-up type.
        Index(
            "ix_checkups_user_type_taken",
            "user_id",
            "checkup_type",
            text("taken_at DESC"),
            text("id DESC"),
        ),
        # Staff lists of every user's check-ups newest first (GET /api/v1/checkups/ with no
        # user_id), by type or date range too: without it each page sorts the whole table.
        # Its cost: bench/ingest.py went from about 32,000 to 30,000 rows/s.
        Index("ix_checkups_taken", text("taken_at DESC"), text("id DESC")),
        # Machine edits find the users to rebuild; machine deletes check references.
        Index("ix_checkups_machine", "machine_id"),
        # Deleting a user sets uploaded_by to NULL on the check-ups they uploaded.
        Index("ix_checkups_uploaded_by", "uploaded_by"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    machine_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("machines.id", ondelete="RESTRICT")
    )
    checkup_type: Mapped[str] = mapped_column(String(32))
    information: Mapped[dict[str, Any]] = mapped_column(JSONB)
    test_taken_by: Mapped[str | None] = mapped_column(String(200))
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
