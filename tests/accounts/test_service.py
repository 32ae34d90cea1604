"""The accounts service: one unit of work per call, conflicts as 409s, outbox rows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from healthapp.accounts import service
from healthapp.accounts.models import Disease, Profile, User
from healthapp.accounts.schemas import (
    DiseaseCreate,
    DiseaseUpdate,
    ProfileCreate,
    ProfileUpdate,
    UserCreate,
    UserUpdate,
)
from healthapp.audit.models import AuditEvent
from healthapp.errors import Conflict, DomainError, NotFound
from healthapp.outbox.models import ReportOutbox
from healthapp.pagination import PageQuery
from healthapp.problems import from_domain_error
from healthapp.unit_of_work import unit_of_work


def _user(session: Any, username: str = "alice", email: str | None = None) -> User:
    return service.create(
        session=session,
        user_in=UserCreate(
            username=username, email=email or f"{username}@example.com", password="0123456789"
        ),
    )


def _queued(session: Any, user_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(ReportOutbox).where(ReportOutbox.user_id == user_id)
        )
    )


def test_create_then_get_by_id_and_username(db_session: Any) -> None:
    user = _user(db_session)
    assert service.get(session=db_session, user_id=user.id) is user
    assert service.get_by_username(session=db_session, username="alice") is user
    assert service.get_by_username(session=db_session, username="bob") is None
    assert user.password_hash.startswith("$argon2id$")


def test_duplicate_email_is_a_409_naming_email_and_rolls_back(db_session: Any) -> None:
    _user(db_session, "alice", "Alice@Example.com")
    with pytest.raises(DomainError) as caught:
        _user(db_session, "bob", "ALICE@example.com")
    assert from_domain_error(caught.value).status == 409
    assert caught.value.errors == [
        {"loc": ["email"], "msg": "That email address is already registered."}
    ]
    # The session is usable again and nothing of bob was stored.
    assert service.get_by_username(session=db_session, username="bob") is None
    assert db_session.scalar(select(func.count()).select_from(User)) == 1


def test_duplicate_username_is_a_409_naming_username(db_session: Any) -> None:
    _user(db_session, "alice")
    with pytest.raises(DomainError) as caught:
        _user(db_session, "alice", "other@example.com")
    assert caught.value.errors[0]["loc"] == ["username"]


def test_update_to_a_taken_email_is_a_409(db_session: Any) -> None:
    _user(db_session, "alice")
    bob = _user(db_session, "bob")
    with pytest.raises(DomainError) as caught:
        service.update(
            session=db_session,
            user=bob,
            user_in=UserUpdate(email="ALICE@example.com"),
            by_self=True,
            revocations=None,
        )
    assert from_domain_error(caught.value).status == 409
    db_session.refresh(bob)
    assert bob.email == "bob@example.com"


def test_every_change_to_what_a_report_shows_is_queued(db_session: Any) -> None:
    user = _user(db_session)
    assert _queued(db_session, user.id) == 1
    service.create_profile(
        session=db_session, user=user, profile_in=ProfileCreate(blood_group="A+")
    )
    service.update_profile(session=db_session, user=user, profile_in=ProfileUpdate(sex="male"))
    disease = service.create_disease(
        session=db_session, user=user, disease_in=DiseaseCreate(name="asthma")
    )
    service.update_disease(
        session=db_session, user=user, disease_id=disease.id, disease_in=DiseaseUpdate(name="flu")
    )
    service.delete_disease(session=db_session, user=user, disease_id=disease.id)
    service.delete_profile(session=db_session, user=user)
    assert _queued(db_session, user.id) == 7


def test_second_profile_is_a_409(db_session: Any) -> None:
    user = _user(db_session)
    service.create_profile(session=db_session, user=user, profile_in=ProfileCreate())
    with pytest.raises(DomainError) as caught:
        service.create_profile(session=db_session, user=user, profile_in=ProfileCreate())
    assert from_domain_error(caught.value).status == 409


def test_delete_cascades_to_profile_and_diseases_and_queues_the_user(db_session: Any) -> None:
    user, other = _user(db_session, "alice"), _user(db_session, "bob")
    for owner in (user, other):
        service.create_profile(session=db_session, user=owner, profile_in=ProfileCreate())
        service.create_disease(
            session=db_session, user=owner, disease_in=DiseaseCreate(name="asthma")
        )
    user_id = user.id
    queued_before = _queued(db_session, user_id)
    service.delete(session=db_session, user=user, revocations=None)
    db_session.expire_all()
    assert service.get(session=db_session, user_id=user_id) is None
    assert db_session.get(Profile, user_id) is None
    assert (
        db_session.scalar(
            select(func.count()).select_from(Disease).where(Disease.user_id == user_id)
        )
        == 0
    )
    assert _queued(db_session, user_id) == queued_before + 1
    # Another user's data is untouched.
    assert service.get_profile(session=db_session, user=other) is not None
    assert db_session.scalar(select(func.count()).select_from(Profile)) == 1


def test_get_disease_only_finds_the_owners(db_session: Any) -> None:
    user, other = _user(db_session, "alice"), _user(db_session, "bob")
    disease = service.create_disease(
        session=db_session, user=user, disease_in=DiseaseCreate(name="asthma")
    )
    assert service.get_disease(session=db_session, user=user, disease_id=disease.id)
    assert service.get_disease(session=db_session, user=other, disease_id=disease.id) is None


def _reads(session: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
    stmt = select(AuditEvent.action, AuditEvent.subject_username, AuditEvent.details)
    stmt = stmt.where(AuditEvent.action.like("%.read")).order_by(AuditEvent.occurred_at)
    rows = session.execute(stmt)
    return [tuple(row) for row in rows]


def test_reads_of_health_data_record_themselves_and_changes_record_no_read(
    db_session: Any,
) -> None:
    user = _user(db_session)
    assert service.get_profile(session=db_session, user=user) is None  # nothing shown
    service.create_profile(session=db_session, user=user, profile_in=ProfileCreate(sex="male"))
    service.update_profile(session=db_session, user=user, profile_in=ProfileUpdate(sex=None))
    disease = service.create_disease(
        session=db_session, user=user, disease_in=DiseaseCreate(name="asthma")
    )
    service.update_disease(
        session=db_session, user=user, disease_id=disease.id, disease_in=DiseaseUpdate(name="flu")
    )
    assert _reads(db_session) == []

    assert service.get_profile(session=db_session, user=user) is not None
    service.list_diseases(session=db_session, user=user, query=PageQuery())
    service.get_disease(session=db_session, user=user, disease_id=disease.id)
    assert service.get_disease(session=db_session, user=user, disease_id=uuid.uuid4()) is None
    assert _reads(db_session) == [
        ("profile.read", "alice", {}),
        ("diseases.read", "alice", {"listed": 1}),
        ("diseases.read", "alice", {"disease_id": str(disease.id)}),
    ]


def test_a_change_to_what_does_not_exist_is_not_found(db_session: Any) -> None:
    user = _user(db_session)
    with pytest.raises(NotFound, match=r"^The profile does not exist\.$"):
        service.update_profile(session=db_session, user=user, profile_in=ProfileUpdate())
    with pytest.raises(NotFound, match=r"^The disease does not exist\.$"):
        service.delete_disease(session=db_session, user=user, disease_id=uuid.uuid4())
    assert _queued(db_session, user.id) == 1  # the registration's row only


def test_a_broken_check_constraint_is_raised_as_it_is(db_session: Any) -> None:
    user = _user(db_session)
    user.role = "superuser"  # breaks ck_users_role_known, a bug no refusal describes
    with pytest.raises(IntegrityError, match="ck_users_role_known"):
        service.update(
            session=db_session, user=user, user_in=UserUpdate(), by_self=True, revocations=None
        )
    db_session.expire_all()
    assert service.get(session=db_session, user_id=user.id).role == "patient"


def test_a_unique_constraint_the_map_does_not_name_is_the_general_conflict(
    db_session: Any,
) -> None:
    user = _user(db_session)
    twin = {"id": user.id, "username": "bob", "email": "bob@example.com", "password_hash": "x"}
    with pytest.raises(Conflict, match=r"^The change conflicts with existing data\.$"):  # noqa: SIM117
        with unit_of_work(db_session):
            # pk_users: no refusal of its own (ids are never chosen by a caller)
            db_session.execute(insert(User).values(**twin))
    db_session.expire_all()
    assert service.get(session=db_session, user_id=user.id).username == "alice"
