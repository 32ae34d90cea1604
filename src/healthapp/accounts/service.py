"""What the accounts domain does: users, their profiles and their diseases.

Each change is one unit of work: the change, its outbox row and its audit event commit
together or not at all. Each read of health data (a profile, diseases) records its audit
event itself, committed before the data is returned, so no caller can serve it unrecorded.
Users are ``get``/``list_users``/``create``/``update``/``delete``; a user's profile and
diseases are the same verbs with the entity's name (``get_profile``, ``list_diseases``…).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthapp.accounts.models import Disease, Profile, User
from healthapp.accounts.schemas import (
    DiseaseCreate,
    DiseaseUpdate,
    ProfileCreate,
    ProfileUpdate,
    UserCreate,
    UserListQuery,
    UserUpdate,
)
from healthapp.audit import service as audit
from healthapp.auth import token_store
from healthapp.auth.passwords import hash_password, verify_against_dummy, verify_password
from healthapp.auth.revocation import Revocations
from healthapp.domain.roles import Role
from healthapp.errors import InvalidInput, NotFound, WrongPassword
from healthapp.outbox.service import record_changed_users
from healthapp.pagination import PageQuery
from healthapp.pagination_sql import paginate_by_time
from healthapp.request_context import Actor
from healthapp.unit_of_work import constraint_error, unit_of_work

#: The longest username (``User.username``): a login naming a longer one is recorded cut.
USERNAME_MAX_LENGTH = 32


# Users ---------------------------------------------------------------------------------


def get(*, session: Session, user_id: uuid.UUID) -> User | None:
    """The user with ``user_id``, if any."""
    return session.get(User, user_id)


def get_by_username(*, session: Session, username: str) -> User | None:
    """The user called ``username``, if any."""
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def authenticate(*, session: Session, username: str, password: str) -> User | None:
    """The user these credentials belong to; ``None`` alike for unknown user and wrong password."""
    user = get_by_username(session=session, username=username.lower())
    if user is None:
        verify_against_dummy(password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    return user


def record_login(*, session: Session, user: User, address: str) -> None:
    """Record that ``user`` signed in from ``address``, committed now: a login changes
    nothing in PostgreSQL for its event to ride on."""
    actor = Actor(id=user.id, username=user.username, role=user.role)
    with unit_of_work(session):
        audit.record(
            session=session,
            action="auth.login",
            subjects=[audit.Subject(user.id, user.username, {"address": address})],
            actor=actor,
        )


def record_failed_login(*, session: Session, username: str, address: str) -> None:
    """Record a refused login for ``username`` from ``address``; never the password.

    Committed now, in its own unit of work, so that it stays although the request fails.
    A name that is no account's is recorded too, without a subject id. The name is kept as
    looked up (lower case) and cut to a username's longest, which no account exceeds.
    """
    tried = username.lower()
    user = get_by_username(session=session, username=tried)  # unknown and known alike
    with unit_of_work(session):
        audit.record(
            session=session,
            action="auth.login_failed",
            subjects=[
                audit.Subject(
                    user.id if user else None, tried[:USERNAME_MAX_LENGTH], {"address": address}
                )
            ],
        )


def list_users(*, session: Session, query: UserListQuery) -> tuple[Sequence[User], str | None]:
    """A page of users in registration order, and the cursor of the next page."""
    stmt = select(User)
    if query.username:
        stmt = stmt.where(User.username == query.username)
    return paginate_by_time(
        session=session,
        stmt=stmt,
        time_column=User.registered_on,
        id_column=User.id,
        limit=query.limit,
        cursor=query.cursor,
    )


def get_role(*, session: Session, user_id: uuid.UUID) -> Role | None:
    """The role stored for ``user_id`` now; ``None`` if there is no such user (one query)."""
    role = session.scalar(select(User.role).where(User.id == user_id))
    return Role(role) if role is not None else None


def create(*, session: Session, user_in: UserCreate) -> User:
    """Register a user; a username or email already taken is a conflict.

    The ``user.create`` event names the new user as its subject and the actor of the
    request context as who made it: an admin, the anonymous caller of open registration,
    or the system (the command line).
    """
    user = User(
        id=uuid.uuid4(),
        username=user_in.username,
        email=str(user_in.email),
        role=user_in.role.value,
        password_hash=hash_password(user_in.password),
    )
    with unit_of_work(session):
        session.add(user)
        session.flush()  # a taken username or email is refused here, before the outbox row
        _record_changed(session, user)
        _audit(session, "user.create", user, role=user.role)
    return user


def update(
    *,
    session: Session,
    user: User,
    user_in: UserUpdate,
    by_self: bool,
    revocations: Revocations | None,
) -> User:
    """Change a user's email, password or role (the caller checked who may change what).

    A user changing their own password (``by_self``) must give the current one: left out
    it is invalid input, wrong it is refused as ``WrongPassword``; either way nothing
    changes. An admin setting another user's password gives none. A new password or a new
    role revokes every token of the user on both APIs (``revocations``, SPEC §14): a token
    must not outlive the password or the role it was given for.
    """
    fields = {
        name
        for name in user_in.model_fields_set - {"current_password"}
        if getattr(user_in, name) is not None
    }
    if by_self and "password" in fields:
        _check_current_password(user, user_in.current_password)
    # What tokens issued before this change may no longer carry (known before it is made).
    password_changed = "password" in fields
    role_changed = user_in.role is not None and user_in.role.value != user.role
    with unit_of_work(session):
        if user_in.email is not None:
            user.email = str(user_in.email)
        if password_changed and user_in.password is not None:
            user.password_hash = hash_password(user_in.password)
        if role_changed and user_in.role is not None:
            user.role = user_in.role.value
        session.flush()  # a taken email is refused here, before the event is recorded
        if fields:
            # Field names only: never the new email, password or its hash.
            _audit(session, "user.update", user, fields=sorted(fields))
        if password_changed or role_changed:
            reason = token_store.PASSWORD if password_changed else token_store.ROLE
            _revoke_tokens(session, revocations, user, reason)
    return user


def _check_current_password(user: User, current_password: str | None) -> None:
    if current_password is None:
        raise InvalidInput(
            "Changing your own password needs your current password.",
            errors=[{"loc": ["current_password"], "msg": "Field required", "type": "missing"}],
        )
    if not verify_password(user.password_hash, current_password):
        raise WrongPassword(
            "The current password is wrong.",
            errors=[{"loc": ["current_password"], "msg": "The current password is wrong."}],
        )


def delete(*, session: Session, user: User, revocations: Revocations | None) -> None:
    """Delete a user with profile, diseases and check-ups, and revoke every token of theirs
    on both APIs (``revocations``); the report goes at the next sync."""
    with unit_of_work(session):
        _record_changed(session, user)
        _audit(session, "user.delete", user)
        _revoke_tokens(session, revocations, user, token_store.DELETION)
        session.execute(sql_delete(User).where(User.id == user.id))


def _revoke_tokens(
    session: Session, revocations: Revocations | None, user: User, reason: str
) -> None:
    """End every session of ``user`` (Redis first: a revocation that cannot be written
    refuses the change), recorded as ``auth.revoked``."""
    ended = token_store.revoke_user(
        session=session,
        revocations=revocations,
        user_id=user.id,
        username=user.username,
        reason=reason,
    )
    _audit(session, "auth.revoked", user, reason=reason, sessions=ended)


# Profile -------------------------------------------------------------------------------


def get_profile(*, session: Session, user: User) -> Profile | None:
    """The user's profile, if one exists; its read is recorded."""
    profile = session.get(Profile, user.id)
    if profile is not None:
        _record_read(session, "profile.read", user)
    return profile


def create_profile(*, session: Session, user: User, profile_in: ProfileCreate) -> Profile:
    """Create the user's profile; a second one is a conflict."""
    with unit_of_work(session):
        if session.get(Profile, user.id) is not None:
            raise constraint_error("pk_profiles")
        profile = Profile(user_id=user.id, **profile_in.model_dump())
        session.add(profile)
        session.flush()
        _record_changed(session, user)
        _audit(
            session,
            "profile.update",
            user,
            change="create",
            fields=sorted(profile_in.model_fields_set),
        )
    session.refresh(profile)
    return profile


def update_profile(*, session: Session, user: User, profile_in: ProfileUpdate) -> Profile:
    """Change the fields the request names; ``null`` clears a field."""
    with unit_of_work(session):
        profile = _profile_of(session, user)
        _apply(profile, profile_in.model_dump(include=profile_in.model_fields_set))
        _record_changed(session, user)
        _audit(
            session,
            "profile.update",
            user,
            change="update",
            fields=sorted(profile_in.model_fields_set),
        )
    session.refresh(profile)
    return profile


def delete_profile(*, session: Session, user: User) -> None:
    """Delete the user's profile."""
    with unit_of_work(session):
        session.delete(_profile_of(session, user))
        _record_changed(session, user)
        _audit(session, "profile.update", user, change="delete")


def _profile_of(session: Session, user: User) -> Profile:
    profile = session.get(Profile, user.id)
    if profile is None:
        raise NotFound("The profile does not exist.")
    return profile


# Diseases ------------------------------------------------------------------------------


def list_diseases(
    *, session: Session, user: User, query: PageQuery
) -> tuple[Sequence[Disease], str | None]:
    """A page of the user's diseases, oldest record first; its read is recorded."""
    diseases, next_cursor = paginate_by_time(
        session=session,
        stmt=select(Disease).where(Disease.user_id == user.id),
        time_column=Disease.created_at,
        id_column=Disease.id,
        limit=query.limit,
        cursor=query.cursor,
    )
    _record_read(session, "diseases.read", user, listed=len(diseases))
    return diseases, next_cursor


def get_disease(*, session: Session, user: User, disease_id: uuid.UUID) -> Disease | None:
    """The user's disease ``disease_id``, if it is theirs; its read is recorded."""
    disease = _find_disease(session, user, disease_id)
    if disease is not None:
        _record_read(session, "diseases.read", user, disease_id=str(disease_id))
    return disease


def create_disease(*, session: Session, user: User, disease_in: DiseaseCreate) -> Disease:
    """Record a disease for the user."""
    disease = Disease(id=uuid.uuid4(), user_id=user.id, **disease_in.model_dump())
    with unit_of_work(session):
        session.add(disease)
        _record_changed(session, user)
        _audit(session, "diseases.update", user, change="create", disease_id=str(disease.id))
    session.refresh(disease)
    return disease


def update_disease(
    *, session: Session, user: User, disease_id: uuid.UUID, disease_in: DiseaseUpdate
) -> Disease:
    """Change the fields the request names of one of the user's diseases."""
    with unit_of_work(session):
        disease = _disease_of(session, user, disease_id)
        _apply(disease, disease_in.model_dump(include=disease_in.model_fields_set))
        _record_changed(session, user)
        _audit(
            session,
            "diseases.update",
            user,
            change="update",
            disease_id=str(disease.id),
            fields=sorted(disease_in.model_fields_set),
        )
    return disease


def delete_disease(*, session: Session, user: User, disease_id: uuid.UUID) -> None:
    """Delete one of the user's diseases."""
    with unit_of_work(session):
        session.delete(_disease_of(session, user, disease_id))
        _record_changed(session, user)
        _audit(session, "diseases.update", user, change="delete", disease_id=str(disease_id))


def _find_disease(session: Session, user: User, disease_id: uuid.UUID) -> Disease | None:
    disease = session.get(Disease, disease_id)
    return disease if disease is not None and disease.user_id == user.id else None


def _disease_of(session: Session, user: User, disease_id: uuid.UUID) -> Disease:
    disease = _find_disease(session, user, disease_id)
    if disease is None:
        raise NotFound("The disease does not exist.")
    return disease


# Outbox and audit ------------------------------------------------------------------------


def _record_changed(session: Session, user: User) -> None:
    """Queue the rebuild of ``user``'s report in the current transaction."""
    record_changed_users(session=session, users={user.id: user.username})


def _record_read(session: Session, action: str, user: User, **details: Any) -> None:
    """Record that the caller was shown ``user``'s health data (names and counts only)."""
    audit.record_read(
        session=session, action=action, subjects=[audit.Subject(user.id, user.username, details)]
    )


def _audit(session: Session, action: str, user: User, **details: Any) -> None:
    """Record ``action`` on ``user``'s data in the current transaction (names, never values)."""
    audit.record(
        session=session, action=action, subjects=[audit.Subject(user.id, user.username, details)]
    )


def _apply(row: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(row, name, value)
