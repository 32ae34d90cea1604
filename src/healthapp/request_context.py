"""Who is acting and for which request, in the current request or command.

The web layer sets both once per request (the request id when it arrives, the actor once
the caller is authenticated); the CLI and the worker leave the system actor and no request
id. Services read them to record who did what, without depending on Flask or Prometheus.
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

_actor: ContextVar[Actor] = ContextVar("healthapp_actor", default=SYSTEM)
_request_id: ContextVar[str | None] = ContextVar("healthapp_request_id", default=None)


def set_actor(actor: Actor) -> None:
    """Make ``actor`` the one recorded for what follows in this context."""
    _actor.set(actor)


def current_actor() -> Actor:
    """The actor of the current context (``SYSTEM`` outside a request)."""
    return _actor.get()


def set_request_id(request_id: str | None) -> None:
    """Bind the id of the request being answered (``None`` once it is answered)."""
    _request_id.set(request_id)


def current_request_id() -> str | None:
    """The id of the request being answered (its ``X-Request-ID``); ``None`` outside one."""
    return _request_id.get()
