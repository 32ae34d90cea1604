"""What the accounts domain does. Each function is one unit of work and commits once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
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
from healthapp.auth.passwords import hash_password
from healthapp.outbox.service import enqueue_users
from healthapp.pagination import PageQuery
from healthapp.pagination_sql import paginate_by_time
from healthapp.problems import Problem

_UNIQUE_FIELDS = {
    "uq_users_username": ("username", "That username is taken."),
    "uq_users_email_lower": ("email", "That email address is already registered."),
}


def _conflict_from(error: IntegrityError) -> Problem:
    constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    field, message = _UNIQUE_FIELDS.get(
        constraint or "", ("", "The change conflicts with existing data.")
    )
    errors = [{"loc": [field], "msg": message}] if field else []
    return Problem(409, message, errors=errors)


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        raise _conflict_from(error) from None


def _commit(session: Session) -> None:
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise _conflict_from(error) from None


# Users ---------------------------------------------------------------------------------


def get(*, session: Session, user_id: uuid.UUID) -> User | None:
    """The user with ``user_id``, if any."""
    return session.get(User, user_id)


def get_by_username(*, session: Session, username: str) -> User | None:
    """The user called ``username``, if any."""
    return session.scalars(select(User).where(User.username == username)).one_or_none()


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


def create(*, session: Session, user_in: UserCreate) -> User:
    """Register a user; a username or email already taken is a 409."""
    user = User(
        id=uuid.uuid4(),
        username=user_in.username,
        email=str(user_in.email),
        role=user_in.role.value,
        password_hash=hash_password(user_in.password),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        raise _conflict_from(error) from None
    enqueue_users(session=session, users=[(user.id, user.username)])
    _commit(session)
    return user


def update(*, session: Session, user: User, user_in: UserUpdate) -> User:
    """Change a user's email, password or role (the caller checked who may change what)."""
    fields = user_in.model_fields_set
    if "email" in fields and user_in.email is not None:
        user.email = str(user_in.email)
    if "password" in fields and user_in.password is not None:
        user.password_hash = hash_password(user_in.password)
    if "role" in fields and user_in.role is not None:
        user.role = user_in.role.value
    changed = sorted(name for name in fields if getattr(user_in, name) is not None)
    _flush(session)  # a taken email is a 409 here, before the event is recorded
    if changed:
        # Field names only: never the new email, password or its hash.
        _audit(session, "user.update", user, fields=changed)
    _commit(session)
    return user


def delete(*, session: Session, user: User) -> None:
    """Delete a user with profile, diseases and check-ups; the report goes at the next sync."""
    enqueue_users(session=session, users=[(user.id, user.username)])
    _audit(session, "user.delete", user)
    session.execute(sql_delete(User).where(User.id == user.id))
    session.commit()


# Profile -------------------------------------------------------------------------------


def get_profile(*, session: Session, user_id: uuid.UUID) -> Profile | None:
    """The user's profile, if one exists."""
    return session.get(Profile, user_id)


def create_profile(*, session: Session, user: User, profile_in: ProfileCreate) -> Profile:
    """Create the user's profile; a second one is a 409."""
    if session.get(Profile, user.id) is not None:
        raise Problem(409, "This user already has a profile; change it with PATCH.")
    profile = Profile(user_id=user.id, **profile_in.model_dump())
    session.add(profile)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Problem(409, "This user already has a profile; change it with PATCH.") from None
    enqueue_users(session=session, users=[(user.id, user.username)])
    _audit(
        session, "profile.update", user, change="create", fields=sorted(profile_in.model_fields_set)
    )
    session.commit()
    session.refresh(profile)
    return profile


def update_profile(
    *, session: Session, user: User, profile: Profile, profile_in: ProfileUpdate
) -> Profile:
    """Change the fields the request names; ``null`` clears a field."""
    _apply(profile, profile_in.model_dump(include=profile_in.model_fields_set))
    enqueue_users(session=session, users=[(user.id, user.username)])
    _audit(
        session, "profile.update", user, change="update", fields=sorted(profile_in.model_fields_set)
    )
    session.commit()
    session.refresh(profile)
    return profile


def delete_profile(*, session: Session, user: User, profile: Profile) -> None:
    """Delete the user's profile."""
    session.delete(profile)
    enqueue_users(session=session, users=[(user.id, user.username)])
    _audit(session, "profile.update", user, change="delete")
    session.commit()


# Diseases ------------------------------------------------------------------------------


def list_diseases(
    *, session: Session, user_id: uuid.UUID, query: PageQuery
) -> tuple[Sequence[Disease], str | None]:
    """A page of the user's diseases, oldest record first."""
    return paginate_by_time(
        session=session,
        stmt=select(Disease).where(Disease.user_id == user_id),
        time_column=Disease.created_at,
        id_column=Disease.id,
        limit=query.limit,
        cursor=query.cursor,
    )


def get_disease(*, session: Session, user_id: uuid.UUID, disease_id: uuid.UUID) -> Disease | None:
    """The user's disease ``disease_id``, if it is theirs."""
    disease = session.get(Disease, disease_id)
    return disease if disease is not None and disease.user_id == user_id else None


def create_disease(*, session: Session, user: User, disease_in: DiseaseCreate) -> Disease:
    """Record a disease for the user."""
    disease = Disease(id=uuid.uuid4(), user_id=user.id, **disease_in.model_dump())
    session.add(disease)
    enqueue_users(session=session, users=[(user.id, user.username)])
    _audit(session, "diseases.update", user, change="create", disease_id=str(disease.id))
    session.commit()
    session.refresh(disease)
    return disease


def update_disease(
    *, session: Session, user: User, disease: Disease, disease_in: DiseaseUpdate
) -> Disease:
    """Change the fields the request names."""
    _apply(disease, disease_in.model_dump(include=disease_in.model_fields_set))
    enqueue_users(session=session, users=[(user.id, user.username)])
    _audit(
        session,
        "diseases.update",
        user,
        change="update",
        disease_id=str(disease.id),
        fields=sorted(disease_in.model_fields_set),
    )
    session.commit()
    return disease


def delete_disease(*, session: Session, user: User, disease: Disease) -> None:
    """Delete one of the user's diseases."""
    session.delete(disease)
    enqueue_users(session=session, users=[(user.id, user.username)])
    _audit(session, "diseases.update", user, change="delete", disease_id=str(disease.id))
    session.commit()


def record_read(*, session: Session, action: str, user: User, **details: Any) -> None:
    """Record that the caller was shown ``user``'s health data (names and counts only),
    committed before the answer goes out."""
    audit.record_reads(
        session=session, action=action, subjects=[audit.Subject(user.id, user.username, details)]
    )


def _audit(session: Session, action: str, user: User, **details: Any) -> None:
    """Record ``action`` on ``user``'s data in the current transaction (names, never values)."""
    audit.record(
        session=session,
        action=action,
        subject_id=user.id,
        subject_username=user.username,
        details=details,
    )


def _apply(row: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(row, name, value)
