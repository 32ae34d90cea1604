"""Every table, imported once so the metadata is complete (for Alembic and tests)."""

from healthapp.accounts.models import Disease, Profile, User
from healthapp.audit.models import AuditEvent
from healthapp.auth.models import TokenFamily
from healthapp.checkups.models import Checkup
from healthapp.machines.models import Machine
from healthapp.mfa.models import RecoveryCode, TotpFactor
from healthapp.orm import Base
from healthapp.outbox.models import ReportOutbox, SyncWatermark

metadata = Base.metadata

__all__ = [
    "AuditEvent",
    "Checkup",
    "Disease",
    "Machine",
    "Profile",
    "RecoveryCode",
    "ReportOutbox",
    "SyncWatermark",
    "TokenFamily",
    "TotpFactor",
    "User",
    "metadata",
]
