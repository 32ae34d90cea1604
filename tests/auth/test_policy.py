"""Who may read or change whose data: the rules every view asks (SPEC §4)."""

from __future__ import annotations

import uuid

import pytest

from healthapp.auth import policy
from healthapp.auth.policy import Principal
from healthapp.domain.roles import Role
from healthapp.errors import NotAllowed, NotFound

SELF = uuid.uuid4()
OTHER = uuid.uuid4()


def _as(role: Role) -> Principal:
    return Principal(id=SELF, username=f"{role.value}-self", role=role)


@pytest.mark.parametrize("role", list(Role))
def test_everyone_reads_their_own_data_and_staff_everyone_s(role: Role) -> None:
    assert policy.can_read(_as(role), SELF)
    assert policy.can_read(_as(role), OTHER) is (role is not Role.PATIENT)


@pytest.mark.parametrize("role", list(Role))
def test_reports_are_read_by_their_user_and_by_staff(role: Role) -> None:
    me = _as(role)
    assert policy.can_read_report(me, me.username)
    assert policy.can_read_report(me, "someone-else") is (role is not Role.PATIENT)


@pytest.mark.parametrize("role", list(Role))
def test_a_stored_report_is_read_by_the_user_it_is_of_and_by_staff(role: Role) -> None:
    me = _as(role)
    staff = role is not Role.PATIENT
    assert policy.can_read_stored_report(me, str(SELF))
    # Another user's report under the same name (the first user deleted), or one stored
    # before owners were recorded: a patient's token is not enough.
    assert policy.can_read_stored_report(me, str(OTHER)) is staff
    assert policy.can_read_stored_report(me, None) is staff


def test_another_patients_data_is_missing_not_forbidden() -> None:
    with pytest.raises(NotFound, match=r"^The check-up does not exist\.$"):
        policy.require_read(_as(Role.PATIENT), OTHER, what="check-up")
    policy.require_read(_as(Role.OPERATOR), OTHER)


def test_a_patient_is_limited_to_themself_and_staff_to_whom_they_ask_for() -> None:
    assert policy.readable_user(_as(Role.PATIENT)) == SELF
    assert policy.readable_user(_as(Role.PATIENT), SELF) == SELF
    with pytest.raises(NotFound):
        policy.readable_user(_as(Role.PATIENT), OTHER)
    for role in (Role.OPERATOR, Role.ADMIN):
        assert policy.readable_user(_as(role)) is None
        assert policy.readable_user(_as(role), OTHER) == OTHER


def test_only_an_admin_registers_another_role_than_patient() -> None:
    policy.require_register(None, Role.PATIENT)
    policy.require_register(_as(Role.ADMIN), Role.OPERATOR)
    for caller in (None, _as(Role.PATIENT), _as(Role.OPERATOR)):
        with pytest.raises(NotAllowed, match="Only an admin may register"):
            policy.require_register(caller, Role.ADMIN)


def test_a_user_is_changed_and_deleted_by_themself_or_an_admin() -> None:
    for role in Role:
        policy.require_change_user(_as(role), SELF)
        policy.require_delete_user(_as(role), SELF)
    policy.require_change_user(_as(Role.ADMIN), OTHER, changes_role=True)
    policy.require_delete_user(_as(Role.ADMIN), OTHER)
    with pytest.raises(NotAllowed, match="themself or an admin may change"):
        policy.require_change_user(_as(Role.OPERATOR), OTHER)
    with pytest.raises(NotAllowed, match="themself or an admin may delete"):
        policy.require_delete_user(_as(Role.OPERATOR), OTHER)
    with pytest.raises(NotFound):  # a patient does not learn that the other user exists
        policy.require_change_user(_as(Role.PATIENT), OTHER)


def test_only_an_admin_changes_a_role_even_their_own() -> None:
    for role in (Role.PATIENT, Role.OPERATOR):
        with pytest.raises(NotAllowed, match=r"^Only an admin may change a role\.$"):
            policy.require_change_user(_as(role), SELF, changes_role=True)


def test_operators_read_health_data_but_change_only_their_own() -> None:
    policy.require_change_health_data(_as(Role.OPERATOR), SELF)
    policy.require_change_health_data(_as(Role.ADMIN), OTHER)
    with pytest.raises(NotAllowed, match="Operators read profiles"):
        policy.require_change_health_data(_as(Role.OPERATOR), OTHER)
    with pytest.raises(NotFound):
        policy.require_change_health_data(_as(Role.PATIENT), OTHER)


def test_operations_decided_by_role_alone() -> None:
    assert {Role.OPERATOR, Role.ADMIN} == policy.LIST_USERS
    assert policy.CHANGE_MACHINES == policy.DELETE_CHECKUPS == policy.READ_AUDIT_TRAIL
    assert {Role.ADMIN} == policy.READ_AUDIT_TRAIL
