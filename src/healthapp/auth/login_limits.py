"""The rate limits of every endpoint that checks a password (SPEC §4, §14): the login and
the second factor's enrolment, which share their counters.

Every attempt from an address counts, whatever it names. The (username, address) pair
counts every attempt as it is checked, in one atomic step, so that requests sent at once
cannot slip past it; a success clears it. The per-username cap counts failures only, after
the view: it checks before whether one more would fit, and concurrent requests are all
checked before any is counted, but each address gets only as many to it as the pair limit
lets through. So no one address can reach the cap and lock the owner out. Limits are
checked shortest period first, those of one period from the lowest decorator up, the first
to refuse ending the check: with the default periods the pair's comes first, and its
figures are the ``X-RateLimit`` headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Response, current_app

from healthapp.extensions import limiter, login_username_address_key, login_username_key

F = TypeVar("F", bound=Callable[..., Any])

#: The scope of the per (username, address) limit, whose count a success starts again.
PAIR_SCOPE = "login-user"


def _per_user_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_USER"])


def _per_username_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_USERNAME"])


def _per_address_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"])


def _refused(response: Response) -> bool:
    """Whether an attempt counts against the per-username cap: refused credentials (or
    second factor). A 400 or 422 tried no password, and a 429 was refused before one was
    checked: counting those would let attempts the limits refused fill the cap."""
    return response.status_code == 401


def login_limits(view: F) -> F:
    """The three login limits on ``view`` (shared scopes: one count for every endpoint
    that takes a password)."""
    limited: Callable[..., Any] = limiter.limit(
        _per_user_limit, key_func=login_username_address_key, scope=PAIR_SCOPE
    )(view)
    limited = limiter.limit(
        _per_username_limit,
        key_func=login_username_key,
        scope="login-username",
        deduct_when=_refused,
    )(limited)
    return cast(F, limiter.limit(_per_address_limit, scope="login-address")(limited))


def restart_failure_count() -> None:
    """Clear this (username, address) pair's count after a login that succeeded: the limit
    counts the failures since the last success, and the owner's sign-ins never add up to a
    lockout of their own."""
    for limit in limiter.current_limits:
        if limit.request_args[-1].endswith(f":{PAIR_SCOPE}"):
            try:
                limit.limiter.clear(limit.limit, *limit.request_args)
            except Exception:  # the limits fail open when their store does not answer
                current_app.logger.warning("could not clear a login failure count")
