"""Who is acting in the current request or command, for the audit trail.

The web layer sets it once the caller is authenticated; the CLI and the worker set a system
actor. Services read it, so they record audit events without depending on Flask.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller (or a named system process) and the request it made."""

    id: uuid.UUID | None
    username: str
    role: str
    request_id: str | None = None


SYSTEM = Actor(id=None, username="system", role="system")
ANONYMOUS = Actor(id=None, username="anonymous", role="anonymous")

_current: ContextVar[Actor] = ContextVar("healthapp_audit_actor", default=SYSTEM)


def set_actor(actor: Actor) -> None:
    """Make ``actor`` the one recorded for what follows in this context."""
    _current.set(actor)


def current_actor() -> Actor:
    """The actor of the current context (``SYSTEM`` outside a request)."""
    return _current.get()
