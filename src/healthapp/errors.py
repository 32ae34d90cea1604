"""What the domain refuses, in the domain's words; the web layer turns each into a problem
document (``healthapp.problems``), the command line into a message.

Services and adapters raise these and never an HTTP type, so they can be called from the
worker and the CLI as they are from a view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class DomainError(Exception):
    """A request the domain refuses; ``errors`` are ``{"loc", "msg"}`` entries (SPEC §3)."""

    def __init__(self, detail: str, *, errors: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""


class Conflict(DomainError):
    """The change contradicts what is stored (a unique value taken, a row still referenced)."""


class InvalidInput(DomainError):
    """The request is well-formed but breaks a rule that only the stored data can tell."""


class InvalidCursor(DomainError):
    """A pagination cursor that this service did not issue, or that was altered."""

    def __init__(
        self,
        detail: str = "The cursor is not valid; start again without one.",
        *,
        errors: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        if errors is None:
            errors = [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        super().__init__(detail, errors=errors)


class NotAllowed(DomainError):
    """The caller's role or relation to the data does not permit this."""


class NotAuthenticated(DomainError):
    """The caller has not proven who they are well enough for this."""


class SecondFactorRequired(NotAuthenticated):
    """The password was right, but the account also needs a valid, unused second-factor code."""


class SecondFactorNotEnrolled(NotAuthenticated):
    """The password was right, but the account must enrol a second factor before signing in."""


class WrongPassword(NotAllowed):
    """A password given to confirm a change is not the account's (a guess to be counted)."""


#: Seconds a client is asked to wait before it retries a request a store could not serve.
RETRY_AFTER_SECONDS = 5


class TooManyAttempts(DomainError):
    """Too many wrong tries in a row; the same request may succeed after ``retry_after``."""

    def __init__(
        self, detail: str, *, retry_after: int, errors: Sequence[dict[str, Any]] = ()
    ) -> None:
        super().__init__(detail, errors=errors)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A store cannot serve this now; the same request may succeed after ``retry_after``."""

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[dict[str, Any]] = (),
        retry_after: int = RETRY_AFTER_SECONDS,
    ) -> None:
        super().__init__(detail, errors=errors)
        self.retry_after = retry_after
