"""HTTP for users, profiles and diseases (SPEC §5). Views translate HTTP and nothing else."""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint
from flask_jwt_extended import verify_jwt_in_request

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
from healthapp.auth.access import (
    ALL_ROLES,
    STAFF,
    Principal,
    current_principal,
    principal_from_token,
    public,
    requires,
)
from healthapp.database import db
from healthapp.domain.roles import Role
from healthapp.pagination import PageQuery
from healthapp.problems import Problem, not_found
from healthapp.request_parsing import json_body, query_args

bp = APIBlueprint("accounts", __name__, url_prefix="/api/v1/users", tag="Users")

_ERRORS = [400, 401, 404, 415, 422]


def _visible_user(user_id: uuid.UUID) -> User:
    """The user ``user_id`` if the caller may see them; 404 otherwise, so ids can't be probed."""
    principal = current_principal()
    principal.require_sees(user_id)
    user = service.get(session=db.session, user_id=user_id)
    if user is None:
        raise not_found("user")
    return user


def _optional_principal() -> Principal | None:
    if verify_jwt_in_request(optional=True) is None:
        return None
    return principal_from_token()


# Users ---------------------------------------------------------------------------------


@bp.get("/")
@bp.output(UserPage)
@bp.doc(responses=[400, 401, 403, 422])
@requires(STAFF)
@query_args(UserListQuery)
def list_users(query: UserListQuery) -> UserPage:
    """List users (operator, admin); filter by ``?username=``."""
    users, next_cursor = service.list_users(session=db.session, query=query)
    return UserPage(items=[UserRead.model_validate(u) for u in users], next_cursor=next_cursor)


@bp.post("/")
@bp.output(UserRead, status_code=201)
@bp.doc(responses=[*_ERRORS, 403, 409])
@public
@json_body(UserCreate)
def create_user(body: UserCreate) -> UserRead:
    """Register a patient; an admin's token may register any role."""
    if body.role is not Role.PATIENT:
        principal = _optional_principal()
        if principal is None or principal.role is not Role.ADMIN:
            raise Problem(403, "Only an admin may register a user with a role other than patient.")
    return UserRead.model_validate(service.create(session=db.session, user_in=body))


@bp.get("/<uuid:user_id>")
@bp.output(UserRead)
@bp.doc(responses=[401, 404])
@requires(ALL_ROLES)
def get_user(user_id: uuid.UUID) -> UserRead:
    """Read a user."""
    return UserRead.model_validate(_visible_user(user_id))


@bp.patch("/<uuid:user_id>")
@bp.output(UserRead)
@bp.doc(responses=[*_ERRORS, 403, 409])
@requires(ALL_ROLES)
@json_body(UserUpdate)
def update_user(user_id: uuid.UUID, body: UserUpdate) -> UserRead:
    """Change a user's email or password; an admin may change the role too."""
    principal = current_principal()
    user = _visible_user(user_id)
    if principal.role is not Role.ADMIN and principal.id != user.id:
        raise Problem(403, "Only the user themself or an admin may change a user.")
    if "role" in body.model_fields_set and principal.role is not Role.ADMIN:
        raise Problem(403, "Only an admin may change a role.")
    return UserRead.model_validate(service.update(session=db.session, user=user, user_in=body))


@bp.delete("/<uuid:user_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[401, 403, 404])
@requires(ALL_ROLES)
def delete_user(user_id: uuid.UUID) -> tuple[str, int]:
    """Delete a user with their profile, diseases, check-ups and report (self or admin)."""
    principal = current_principal()
    user = _visible_user(user_id)
    if principal.role is not Role.ADMIN and principal.id != user.id:
        raise Problem(403, "Only the user themself or an admin may delete a user.")
    service.delete(session=db.session, user=user)
    return "", 204


# Profile -------------------------------------------------------------------------------


def _profile_owner(user_id: uuid.UUID, *, write: bool) -> User:
    user = _visible_user(user_id)
    principal = current_principal()
    if write and principal.role is Role.OPERATOR and principal.id != user.id:
        raise Problem(403, "Operators read profiles; only the user or an admin changes them.")
    return user


@bp.get("/<uuid:user_id>/profile")
@bp.output(ProfileRead)
@bp.doc(responses=[401, 404])
@requires(ALL_ROLES)
def get_profile(user_id: uuid.UUID) -> ProfileRead:
    """Read a user's profile."""
    user = _profile_owner(user_id, write=False)
    profile = service.get_profile(session=db.session, user_id=user.id)
    if profile is None:
        raise not_found("profile")
    answer = ProfileRead.model_validate(profile)
    service.record_read(session=db.session, action="profile.read", user=user)
    return answer


@bp.post("/<uuid:user_id>/profile")
@bp.output(ProfileRead, status_code=201)
@bp.doc(responses=[*_ERRORS, 403, 409])
@requires(ALL_ROLES)
@json_body(ProfileCreate)
def create_profile(user_id: uuid.UUID, body: ProfileCreate) -> ProfileRead:
    """Create a user's profile (409 if one exists)."""
    user = _profile_owner(user_id, write=True)
    profile = service.create_profile(session=db.session, user=user, profile_in=body)
    return ProfileRead.model_validate(profile)


@bp.patch("/<uuid:user_id>/profile")
@bp.output(ProfileRead)
@bp.doc(responses=[*_ERRORS, 403])
@requires(ALL_ROLES)
@json_body(ProfileUpdate)
def update_profile(user_id: uuid.UUID, body: ProfileUpdate) -> ProfileRead:
    """Change a user's profile; ``null`` clears a field."""
    user = _profile_owner(user_id, write=True)
    profile = service.get_profile(session=db.session, user_id=user.id)
    if profile is None:
        raise not_found("profile")
    profile = service.update_profile(
        session=db.session, user=user, profile=profile, profile_in=body
    )
    return ProfileRead.model_validate(profile)


@bp.delete("/<uuid:user_id>/profile")
@bp.output({}, status_code=204)
@bp.doc(responses=[401, 403, 404])
@requires(ALL_ROLES)
def delete_profile(user_id: uuid.UUID) -> tuple[str, int]:
    """Delete a user's profile."""
    user = _profile_owner(user_id, write=True)
    profile = service.get_profile(session=db.session, user_id=user.id)
    if profile is None:
        raise not_found("profile")
    service.delete_profile(session=db.session, user=user, profile=profile)
    return "", 204


# Diseases ------------------------------------------------------------------------------


@bp.get("/<uuid:user_id>/diseases")
@bp.output(DiseasePage)
@bp.doc(responses=[400, 401, 404, 422])
@requires(ALL_ROLES)
@query_args(PageQuery)
def list_diseases(user_id: uuid.UUID, query: PageQuery) -> DiseasePage:
    """List a user's diseases."""
    user = _profile_owner(user_id, write=False)
    diseases, next_cursor = service.list_diseases(session=db.session, user_id=user.id, query=query)
    answer = DiseasePage(
        items=[DiseaseRead.model_validate(d) for d in diseases], next_cursor=next_cursor
    )
    service.record_read(
        session=db.session, action="diseases.read", user=user, listed=len(answer.items)
    )
    return answer


@bp.post("/<uuid:user_id>/diseases")
@bp.output(DiseaseRead, status_code=201)
@bp.doc(responses=[*_ERRORS, 403])
@requires(ALL_ROLES)
@json_body(DiseaseCreate)
def create_disease(user_id: uuid.UUID, body: DiseaseCreate) -> DiseaseRead:
    """Record a disease for a user."""
    user = _profile_owner(user_id, write=True)
    disease = service.create_disease(session=db.session, user=user, disease_in=body)
    return DiseaseRead.model_validate(disease)


def _visible_disease(user: User, disease_id: uuid.UUID):  # type: ignore[no-untyped-def]
    disease = service.get_disease(session=db.session, user_id=user.id, disease_id=disease_id)
    if disease is None:
        raise not_found("disease")
    return disease


@bp.get("/<uuid:user_id>/diseases/<uuid:disease_id>")
@bp.output(DiseaseRead)
@bp.doc(responses=[401, 404])
@requires(ALL_ROLES)
def get_disease(user_id: uuid.UUID, disease_id: uuid.UUID) -> DiseaseRead:
    """Read one of a user's diseases."""
    user = _profile_owner(user_id, write=False)
    answer = DiseaseRead.model_validate(_visible_disease(user, disease_id))
    service.record_read(
        session=db.session, action="diseases.read", user=user, disease_id=str(disease_id)
    )
    return answer


@bp.patch("/<uuid:user_id>/diseases/<uuid:disease_id>")
@bp.output(DiseaseRead)
@bp.doc(responses=[*_ERRORS, 403])
@requires(ALL_ROLES)
@json_body(DiseaseUpdate)
def update_disease(user_id: uuid.UUID, disease_id: uuid.UUID, body: DiseaseUpdate) -> DiseaseRead:
    """Change one of a user's diseases."""
    user = _profile_owner(user_id, write=True)
    disease = service.update_disease(
        session=db.session, user=user, disease=_visible_disease(user, disease_id), disease_in=body
    )
    return DiseaseRead.model_validate(disease)


@bp.delete("/<uuid:user_id>/diseases/<uuid:disease_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[401, 403, 404])
@requires(ALL_ROLES)
def delete_disease(user_id: uuid.UUID, disease_id: uuid.UUID) -> tuple[str, int]:
    """Delete one of a user's diseases."""
    user = _profile_owner(user_id, write=True)
    service.delete_disease(
        session=db.session, user=user, disease=_visible_disease(user, disease_id)
    )
    return "", 204
