"""One unit of work per service call: one commit, a rollback on any error.

A constraint the database enforces and a change breaks is answered in the domain's words:
``CONSTRAINT_ERRORS`` maps each named constraint (``orm.NAMING_CONVENTION`` and the
migrations name them) to the refusal it means. Another unique or foreign-key constraint
gets the general conflict (and a warning naming it, so the map can be completed); a broken
check or not-null constraint is a bug the validation let through, and is raised as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import psycopg
import sqlalchemy.exc
import structlog
from sqlalchemy.orm import Session

from healthapp.errors import Conflict, DomainError

#: PostgreSQL's SQLSTATEs of a broken constraint.
UNIQUE = "23505"
FOREIGN_KEY = "23503"  # a row names one that does not exist (any more)
RESTRICT = "23001"  # a delete of a row that others still name (``ON DELETE RESTRICT``)

_log = structlog.get_logger("healthapp.unit_of_work")

_UPLOAD_RACE = "A user or machine of this upload was deleted meanwhile; retry the upload."

#: What breaking each named constraint means, by constraint name and SQLSTATE.
CONSTRAINT_ERRORS: dict[tuple[str, str], Callable[[], DomainError]] = {
    ("uq_users_username", UNIQUE): partial(
        Conflict,
        "That username is taken.",
        errors=[{"loc": ["username"], "msg": "That username is taken."}],
    ),
    ("uq_users_email_lower", UNIQUE): partial(
        Conflict,
        "That email address is already registered.",
        errors=[{"loc": ["email"], "msg": "That email address is already registered."}],
    ),
    ("pk_profiles", UNIQUE): partial(
        Conflict, "This user already has a profile; change it with PATCH."
    ),
    ("uq_machines_serial_number", UNIQUE): partial(
        Conflict,
        "A machine with that serial number is already registered.",
        errors=[{"loc": ["serial_number"], "msg": "serial number already registered"}],
    ),
    ("fk_checkups_machine_id_machines", RESTRICT): partial(
        Conflict, 'Check-ups reference this machine; retire it with {"active": false} instead.'
    ),
    ("fk_checkups_machine_id_machines", FOREIGN_KEY): partial(Conflict, _UPLOAD_RACE),
    ("fk_checkups_user_id_users", FOREIGN_KEY): partial(Conflict, _UPLOAD_RACE),
    ("fk_checkups_uploaded_by_users", FOREIGN_KEY): partial(Conflict, _UPLOAD_RACE),
}


def constraint_error(constraint: str, sqlstate: str = UNIQUE) -> DomainError:
    """The refusal that breaking ``constraint`` means (for a check made before the write)."""
    return CONSTRAINT_ERRORS[(constraint, sqlstate)]()


@contextmanager
def unit_of_work(session: Session) -> Iterator[Session]:
    """Commit ``session`` when the block ends; roll back on any error, and raise a broken
    constraint as the refusal it means."""
    try:
        yield session
        session.commit()
    except (sqlalchemy.exc.IntegrityError, psycopg.errors.IntegrityError) as error:
        session.rollback()
        refusal = _refusal_of(error)
        if refusal is None:
            raise
        raise refusal from None
    except BaseException:
        session.rollback()
        raise


def _refusal_of(error: Exception) -> DomainError | None:
    # SQLAlchemy wraps the driver's error; a raw COPY raises the driver's own.
    driver_error = getattr(error, "orig", error)
    sqlstate = getattr(driver_error, "sqlstate", None)
    constraint = getattr(getattr(driver_error, "diag", None), "constraint_name", None)
    make = CONSTRAINT_ERRORS.get((constraint or "", sqlstate or ""))
    if make is not None:
        return make()
    if sqlstate in (UNIQUE, FOREIGN_KEY, RESTRICT):
        _log.warning("constraint without a refusal of its own", constraint=constraint)
        return Conflict("The change conflicts with existing data.")
    return None
