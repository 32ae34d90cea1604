"""Who may read or change whose data (SPEC §4), in one place; every view asks here.

``@requires`` (``healthapp.auth.access``) admits a role to an operation; these rules then
decide on the data at hand. Patients read and change only their own data; operators read
everyone's and change only their own account and health data; admins do everything. Data
the caller may not read is answered as missing, so that its ids cannot be probed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from healthapp.domain.roles import Role
from healthapp.errors import NotAllowed, NotFound

ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.OPERATOR, Role.ADMIN})
ADMIN_ONLY = frozenset({Role.ADMIN})

# Operations that the caller's role alone decides (``@requires`` admits these roles).
LIST_USERS = STAFF
CHANGE_MACHINES = ADMIN_ONLY  # register, change, retire, delete
DELETE_CHECKUPS = ADMIN_ONLY  # a correction is a delete and a new upload
READ_AUDIT_TRAIL = ADMIN_ONLY
# Who makes the account changes that are not self-service.
REGISTER_STAFF = ADMIN_ONLY  # a user of a role other than patient
CHANGE_OTHER_USERS = ADMIN_ONLY  # another user's account or health data, or any role


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as its access token describes it."""

    id: uuid.UUID
    username: str
    role: Role


def can_read(principal: Principal, user_id: uuid.UUID) -> bool:
    """Whether the caller may read ``user_id``'s data."""
    return principal.role.sees_everyone or principal.id == user_id


def can_read_report(principal: Principal, username: str) -> bool:
    """Whether the caller may ask for the report stored for ``username`` (the read side
    knows users by name): staff, or a patient for their own name.

    A first check, made before anything is read; the report read must then pass
    ``can_read_stored_report``, as a name alone authorises nothing (SPEC §14).
    """
    return principal.role.sees_everyone or principal.username == username


def can_read_stored_report(principal: Principal, owner_id: str | None) -> bool:
    """Whether the caller may read a report the sync stored as that of user ``owner_id``
    (``None``: stored before owners were): staff, or the patient whose token's ``sub`` is
    that id. A token of a deleted user never reads a later user who took the same name."""
    return principal.role.sees_everyone or (owner_id is not None and owner_id == str(principal.id))


def require_read(principal: Principal, user_id: uuid.UUID, *, what: str = "user") -> None:
    """Refuse, as missing (not as forbidden: ids cannot be probed), a read of another's data."""
    if not can_read(principal, user_id):
        raise NotFound(f"The {what} does not exist.")


def readable_user(principal: Principal, user_id: uuid.UUID | None = None) -> uuid.UUID | None:
    """The one user whose data a read or an upload is limited to; ``None`` for anyone's.

    Staff are limited to the user they ask for, if any; a patient always to themself (asking
    for another user is refused as missing).
    """
    if principal.role.sees_everyone:
        return user_id
    if user_id is not None:
        require_read(principal, user_id)
    return principal.id


def require_register(principal: Principal | None, role: Role) -> None:
    """Anyone registers a patient; only an admin registers another role."""
    if role is not Role.PATIENT and (principal is None or principal.role is not Role.ADMIN):
        raise NotAllowed("Only an admin may register a user with a role other than patient.")


def registers_staff(role: Role) -> bool:
    """Whether registering a user of ``role`` is privileged (``REGISTER_STAFF``)."""
    return role is not Role.PATIENT


def is_privileged_change(
    principal: Principal, user_id: uuid.UUID, *, changes_role: bool = False
) -> bool:
    """Whether a change of ``user_id``'s account or data is privileged
    (``CHANGE_OTHER_USERS``): it is someone else's, or it sets a role."""
    return changes_role or principal.id != user_id


def require_change_user(
    principal: Principal, user_id: uuid.UUID, *, changes_role: bool = False
) -> None:
    """A user is changed by themself or an admin; a role only by an admin."""
    require_read(principal, user_id)
    if principal.role is not Role.ADMIN and principal.id != user_id:
        raise NotAllowed("Only the user themself or an admin may change a user.")
    if changes_role and principal.role is not Role.ADMIN:
        raise NotAllowed("Only an admin may change a role.")


def require_delete_user(principal: Principal, user_id: uuid.UUID) -> None:
    """A user is deleted by themself or an admin."""
    require_read(principal, user_id)
    if principal.role is not Role.ADMIN and principal.id != user_id:
        raise NotAllowed("Only the user themself or an admin may delete a user.")


def require_change_health_data(principal: Principal, user_id: uuid.UUID) -> None:
    """A profile or a disease is changed by its user or an admin, never by an operator."""
    require_read(principal, user_id)
    if principal.role is not Role.ADMIN and principal.id != user_id:
        raise NotAllowed("Operators read profiles; only the user or an admin changes them.")
