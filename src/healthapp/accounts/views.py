"""HTTP for users, profiles and diseases (SPEC §5). Views translate HTTP and nothing else."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, g, request

from healthapp.accounts import service
from healthapp.accounts.models import User
from healthapp.accounts.schemas import (
    DiseaseCreate,
    DiseasePage,
    DiseaseRead,
    DiseaseUpdate,
    ProfileCreate,
    ProfileRead,
    ProfileUpdate,
    UserCreate,
    UserListQuery,
    UserPage,
    UserRead,
    UserUpdate,
)
from healthapp.auth import policy
from healthapp.auth.access import (
    act_as,
    bearer_token,
    current_principal,
    optional_principal,
    principal_from_token,
    public,
    requires,
    token_checks,
)
from healthapp.auth.policy import Principal
from healthapp.auth.privileged import privileged
from healthapp.database import db
from healthapp.domain.roles import Role
from healthapp.errors import WrongPassword
from healthapp.extensions import limiter
from healthapp.pagination import PageQuery
from healthapp.problems import Problem, not_found
from healthapp.request_parsing import json_body, query_args

bp = APIBlueprint("accounts", __name__, url_prefix="/api/v1/users", tag="Users")

_ERRORS = [400, 401, 404, 415, 422]


def _visible_user(user_id: uuid.UUID) -> User:
    """The user ``user_id`` if the caller may see them; 404 otherwise, so ids can't be probed."""
    policy.require_read(current_principal(), user_id)
    user = service.get(session=db.session, user_id=user_id)
    if user is None:
        raise not_found("user")
    return user


def _register_limit() -> str:
    return str(current_app.config["REGISTER_RATE_LIMIT_PER_ADDRESS"])


def _created_by_admin() -> bool:
    """Whether an admin (the role stored now, not only the token's) creates this account:
    the per-address limit is for people registering themselves, and never locks admins out.
    """
    try:
        principal = optional_principal()
    except Exception:
        # A bad token exempts nothing (the view answers it); raising here would let the
        # request through unlimited, as the limiter does when a check fails.
        return False
    if principal is None or principal.role is not Role.ADMIN:
        return False
    user = service.get(session=db.session, user_id=principal.id)
    return user is not None and user.role == Role.ADMIN


def _token_caller(*, strict: bool) -> Principal | None:
    """The caller whose token came with a request to a public view, if any; a bad token is
    a 401 when ``strict``, and otherwise as good as none."""
    if bearer_token() is None:
        return None
    try:
        return principal_from_token()
    except Problem:
        if strict:
            raise
        return None


def _registers_staff(body: UserCreate) -> bool:
    return policy.registers_staff(body.role)


def _changes_a_role_or_another_user(user_id: uuid.UUID, body: UserUpdate) -> bool:
    changes_role = "role" in body.model_fields_set
    return policy.is_privileged_change(current_principal(), user_id, changes_role=changes_role)


def _of_another_user(user_id: uuid.UUID, **_: Any) -> bool:
    return policy.is_privileged_change(current_principal(), user_id)


# Wrong current passwords, counted per account: a stolen access token must not be a way to
# guess the password it was issued for (and so outlive its revocation).


def _current_password_limit() -> str:
    return str(current_app.config["CURRENT_PASSWORD_RATE_LIMIT_PER_USER"])


def _current_password_key() -> str:
    return f"current-password:{(request.view_args or {}).get('user_id')}"


def _not_own_account() -> bool:
    # Only a user changing their own account gives a current password: nobody else's
    # request is held up by that account's wrong guesses.
    principal: Principal | None = g.get("principal")
    return principal is None or principal.id != (request.view_args or {}).get("user_id")


def _guessed_wrong(_response: Response) -> bool:
    return bool(g.get("wrong_current_password"))


# Users ---------------------------------------------------------------------------------


@bp.get("/")
@bp.output(UserPage)
@bp.doc(responses=[400, 401, 403, 422])
@requires(policy.LIST_USERS)
@query_args(UserListQuery)
def list_users(query: UserListQuery) -> UserPage:
    """List users (operator, admin); filter by ``?username=``."""
    users, next_cursor = service.list_users(session=db.session, query=query)
    return UserPage(items=[UserRead.model_validate(u) for u in users], next_cursor=next_cursor)


@bp.post("/")
@limiter.limit(_register_limit, scope="register", exempt_when=_created_by_admin)
@bp.output(UserRead, status_code=201)
@bp.doc(responses=[*_ERRORS, 403, 409, 429])
@public
@json_body(UserCreate)
@privileged(policy.REGISTER_STAFF, when=_registers_staff)
def create_user(body: UserCreate) -> UserRead:
    """Register a patient; an admin's token may register any role.

    A patient registers without a token. Any other role needs the token of a user who is
    an admin now: a token whose account was deleted since is a 401, one whose account is
    no longer an admin a 403. The ``user.create`` audit event names who did it: the
    caller whose valid token came with the request, else the anonymous caller.
    """
    caller = _token_caller(strict=body.role is not Role.PATIENT)
    policy.require_register(caller, body.role)
    if caller is not None:
        act_as(caller)
    return UserRead.model_validate(service.create(session=db.session, user_in=body))


@bp.get("/<uuid:user_id>")
@bp.output(UserRead)
@bp.doc(responses=[401, 404])
@requires(policy.ALL_ROLES)
def get_user(user_id: uuid.UUID) -> UserRead:
    """Read a user."""
    return UserRead.model_validate(_visible_user(user_id))


_UPDATE_RESPONSES: dict[int | str, Any] = {
    400: "The body is not valid JSON.",
    401: "No valid access token, or its account no longer exists (for an admin's change).",
    403: "Not allowed: another user's account or a role (admins only, as stored now), "
    "or a wrong `current_password`.",
    404: "No such user, or one the caller may not see.",
    409: "The email address is taken.",
    415: "The body is not JSON.",
    422: "A field is invalid, or `current_password` is missing from a change of your own password.",
    429: "Too many wrong current passwords for this account; retry after Retry-After.",
}


@bp.patch("/<uuid:user_id>")
@bp.output(UserRead)
@bp.doc(responses=_UPDATE_RESPONSES)
@requires(policy.ALL_ROLES)
# Below @requires: the limit applies to the account's own user, whom @requires identifies.
@limiter.limit(
    _current_password_limit,
    key_func=_current_password_key,
    scope="current-password",
    exempt_when=_not_own_account,
    deduct_when=_guessed_wrong,
)
@json_body(UserUpdate)
@privileged(policy.CHANGE_OTHER_USERS, when=_changes_a_role_or_another_user)
def update_user(user_id: uuid.UUID, body: UserUpdate) -> UserRead:
    """Change a user's email or password; an admin may change the role too.

    Changing your own password needs ``current_password`` (missing: 422; wrong: 403, and
    each wrong one counts against CURRENT_PASSWORD_RATE_LIMIT_PER_USER, past which the
    account's own changes get 429). An admin sets another user's password without it.
    Changing another user or a role is checked against the caller's role as stored now,
    not only as the token says.
    """
    user = _visible_user(user_id)
    principal = current_principal()
    policy.require_change_user(principal, user.id, changes_role="role" in body.model_fields_set)
    try:
        changed = service.update(
            session=db.session,
            user=user,
            user_in=body,
            by_self=principal.id == user.id,
            revocations=token_checks().revocations,
        )
    except WrongPassword:
        g.wrong_current_password = True  # counted by the limit above
        raise
    return UserRead.model_validate(changed)


@bp.delete("/<uuid:user_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[401, 403, 404])
@requires(policy.ALL_ROLES)
@privileged(policy.CHANGE_OTHER_USERS, when=_of_another_user)
def delete_user(user_id: uuid.UUID) -> tuple[str, int]:
    """Delete a user with their profile, diseases, check-ups and report (self or admin)."""
    user = _visible_user(user_id)
    policy.require_delete_user(current_principal(), user.id)
    service.delete(session=db.session, user=user, revocations=token_checks().revocations)
    return "", 204


# Profile -------------------------------------------------------------------------------


def _profile_owner(user_id: uuid.UUID, *, write: bool) -> User:
    """The user whose health data is asked for, if the caller may read it (or change it)."""
    user = _visible_user(user_id)
    if write:
        policy.require_change_health_data(current_principal(), user.id)
    return user


@bp.get("/<uuid:user_id>/profile")
@bp.output(ProfileRead)
@bp.doc(responses=[401, 404])
@requires(policy.ALL_ROLES)
def get_profile(user_id: uuid.UUID) -> ProfileRead:
    """Read a user's profile."""
    user = _profile_owner(user_id, write=False)
    profile = service.get_profile(session=db.session, user=user)
    if profile is None:
        raise not_found("profile")
    return ProfileRead.model_validate(profile)


@bp.post("/<uuid:user_id>/profile")
@bp.output(ProfileRead, status_code=201)
@bp.doc(responses=[*_ERRORS, 403, 409])
@requires(policy.ALL_ROLES)
@privileged(policy.CHANGE_OTHER_USERS, when=_of_another_user)
@json_body(ProfileCreate)
def create_profile(user_id: uuid.UUID, body: ProfileCreate) -> ProfileRead:
    """Create a user's profile (409 if one exists)."""
    user = _profile_owner(user_id, write=True)
    profile = service.create_profile(session=db.session, user=user, profile_in=body)
    return ProfileRead.model_validate(profile)


@bp.patch("/<uuid:user_id>/profile")
@bp.output(ProfileRead)
@bp.doc(responses=[*_ERRORS, 403])
@requires(policy.ALL_ROLES)
@privileged(policy.CHANGE_OTHER_USERS, when=_of_another_user)
@json_body(ProfileUpdate)
def update_profile(user_id: uuid.UUID, body: ProfileUpdate) -> ProfileRead:
    """Change a user's profile; ``null`` clears a field."""
    user = _profile_owner(user_id, write=True)
    profile = service.update_profile(session=db.session, user=user, profile_in=body)
    return ProfileRead.model_validate(profile)


@bp.delete("/<uuid:user_id>/profile")
@bp.output({}, status_code=204)
@bp.doc(responses=[401, 403, 404])
@requires(policy.ALL_ROLES)
@privileged(policy.CHANGE_OTHER_USERS, when=_of_another_user)
def delete_profile(user_id: uuid.UUID) -> tuple[str, int]:
    """Delete a user's profile."""
    user = _profile_owner(user_id, write=True)
    service.delete_profile(session=db.session, user=user)
    return "", 204


# Diseases ------------------------------------------------------------------------------


@bp.get("/<uuid:user_id>/diseases")
@bp.output(DiseasePage)
@bp.doc(responses=[400, 401, 404, 422])
@requires(policy.ALL_ROLES)
@query_args(PageQuery)
def list_diseases(user_id: uuid.UUID, query: PageQuery) -> DiseasePage:
    """List a user's diseases."""
    user = _profile_owner(user_id, write=False)
    diseases, next_cursor = service.list_diseases(session=db.session, user=user, query=query)
    return DiseasePage(
        items=[DiseaseRead.model_validate(d) for d in diseases], next_cursor=next_cursor
    )


@bp.post("/<uuid:user_id>/diseases")
@bp.output(DiseaseRead, status_code=201)
@bp.doc(responses=[*_ERRORS, 403])
@requires(policy.ALL_ROLES)
@privileged(policy.CHANGE_OTHER_USERS, when=_of_another_user)
@json_body(DiseaseCreate)
def create_disease(user_id: uuid.UUID, body: DiseaseCreate) -> DiseaseRead:
    """Record a disease for a user."""
    user = _profile_owner(user_id, write=True)
    disease = service.create_disease(session=db.session, user=user, disease_in=body)
    return DiseaseRead.model_validate(disease)


@bp.get("/<uuid:user_id>/diseases/<uuid:disease_id>")
@bp.output(DiseaseRead)
@bp.doc(responses=[401, 404])
@requires(policy.ALL_ROLES)
def get_disease(user_id: uuid.UUID, disease_id: uuid.UUID) -> DiseaseRead:
    """Read one of a user's diseases."""
    user = _profile_owner(user_id, write=False)
    disease = service.get_disease(session=db.session, user=user, disease_id=disease_id)
    if disease is None:
        raise not_found("disease")
    return DiseaseRead.model_validate(disease)


@bp.patch("/<uuid:user_id>/diseases/<uuid:disease_id>")
@bp.output(DiseaseRead)
@bp.doc(responses=[*_ERRORS, 403])
@requires(policy.ALL_ROLES)
@privileged(policy.CHANGE_OTHER_USERS, when=_of_another_user)
@json_body(DiseaseUpdate)
def update_disease(user_id: uuid.UUID, disease_id: uuid.UUID, body: DiseaseUpdate) -> DiseaseRead:
    """Change one of a user's diseases."""
    user = _profile_owner(user_id, write=True)
    disease = service.update_disease(
        session=db.session, user=user, disease_id=disease_id, disease_in=body
    )
    return DiseaseRead.model_validate(disease)


@bp.delete("/<uuid:user_id>/diseases/<uuid:disease_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[401, 403, 404])
@requires(policy.ALL_ROLES)
@privileged(policy.CHANGE_OTHER_USERS, when=_of_another_user)
def delete_disease(user_id: uuid.UUID, disease_id: uuid.UUID) -> tuple[str, int]:
    """Delete one of a user's diseases."""
    user = _profile_owner(user_id, write=True)
    service.delete_disease(session=db.session, user=user, disease_id=disease_id)
    return "", 204
