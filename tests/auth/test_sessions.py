"""Sessions you can trust (SPEC §14): rotation, replay, logout and revocation on both APIs.

Both APIs here share the suite's Redis, as a deployment does, so that a revocation the Core
API writes is what the Reports API reads.
"""

from __future__ import annotations

from typing import Any

import jwt as pyjwt
import pytest
import redis
from sqlalchemy import Engine, text

from healthapp import config
from healthapp.app import create_app as create_core_app
from healthapp.auth.revocation import revocation_key
from healthapp.domain.roles import Role
from healthapp.reports.app import create_app as create_reports_app
from healthapp.sync.passes import run_incremental_sync
from tests.assertions import assert_problem
from tests.factories import PASSWORD, ApiClient, TestUser, checkup_item, claims_of

TOKEN, REFRESH, LOGOUT = "/api/v1/auth/token", "/api/v1/auth/refresh", "/api/v1/auth/logout"


@pytest.fixture(scope="module")
def apps(database_url: str, redis_url: str, engine: Engine) -> tuple[Any, Any]:
    core_settings = config.Testing()
    core_settings.DATABASE_URL = database_url
    core_settings.REDIS_URL = redis_url
    reports_settings = config.Testing()
    reports_settings.REDIS_URL = redis_url
    reports_settings.STORE_TIMEOUT_SECONDS = 1
    return create_core_app(core_settings, engine=engine), create_reports_app(reports_settings)


@pytest.fixture
def core(apps: tuple[Any, Any], redis_client: redis.Redis) -> ApiClient:
    return ApiClient(apps[0], apps[0].test_client())


@pytest.fixture
def reports(apps: tuple[Any, Any], redis_client: redis.Redis) -> Any:
    return apps[1].test_client()


@pytest.fixture
def patient(core: ApiClient, engine: Engine, redis_client: redis.Redis) -> TestUser:
    """A patient with a synced report, signed in through the API."""
    user = core.user(Role.PATIENT)
    item = checkup_item(user.id, core.machine())
    assert core.post("/api/v1/checkups/", as_=user, json={"checkups": [item]}).status_code == 201
    run_incremental_sync(engine=engine, redis_client=redis_client)
    return _signed_in(core, user)


def _signed_in(core: ApiClient, user: TestUser, password: str = PASSWORD) -> TestUser:
    response = core.post(TOKEN, json={"username": user.username, "password": password})
    assert response.status_code == 200, response.json
    body = response.json
    return TestUser(user.id, user.username, user.role, body["access_token"], body["refresh_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _opens_both(core: ApiClient, reports: Any, user: TestUser) -> tuple[int, int]:
    """The statuses of one read on each API with ``user``'s access token (twice each: the
    second is answered with the verified-token cache, which must respect revocation)."""
    statuses = []
    for _ in range(2):
        statuses.append(
            (
                core.get(
                    f"/api/v1/users/{user.id}", headers=_bearer(user.access_token)
                ).status_code,
                reports.get(
                    f"/api/v1/users/{user.username}/", headers=_bearer(user.access_token)
                ).status_code,
            )
        )
    assert statuses[0] == statuses[1], statuses
    return statuses[0]


def _events(engine: Engine, action: str, username: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor_username, details FROM audit_events"
                " WHERE action = :action AND subject_username = :username ORDER BY occurred_at"
            ),
            {"action": action, "username": username},
        ).mappings()
        return [dict(row) for row in rows]


# Rotation and replay -------------------------------------------------------------------


def test_each_refresh_rotates_the_refresh_token(core: ApiClient, patient: TestUser) -> None:
    first = core.post(REFRESH, headers=_bearer(patient.refresh_token)).json
    second = core.post(REFRESH, headers=_bearer(first["refresh_token"])).json
    assert len({patient.refresh_token, first["refresh_token"], second["refresh_token"]}) == 3
    assert claims_of(second["access_token"])["fam"] == claims_of(patient.access_token)["fam"]
    assert (
        core.get(
            "/api/v1/users/" + str(patient.id), headers=_bearer(second["access_token"])
        ).status_code
        == 200
    )


def test_a_replayed_refresh_token_ends_the_whole_session(
    core: ApiClient, reports: Any, patient: TestUser, engine: Engine
) -> None:
    rotated = core.post(REFRESH, headers=_bearer(patient.refresh_token)).json
    # The retired token comes back, as a thief replaying it would send it.
    assert_problem(core.post(REFRESH, headers=_bearer(patient.refresh_token)), 401)
    # Every token of that session is revoked, the rotated one and the access tokens too.
    assert_problem(core.post(REFRESH, headers=_bearer(rotated["refresh_token"])), 401)
    newest = TestUser(patient.id, patient.username, patient.role, rotated["access_token"], "")
    assert _opens_both(core, reports, newest) == (401, 401)
    assert _opens_both(core, reports, patient) == (401, 401)
    [event] = _events(engine, "auth.revoked", patient.username)
    assert event["details"] == {"reason": "refresh_replayed", "sessions": 1}
    # Another session of the same user is untouched, and signing in again works.
    assert _opens_both(core, reports, _signed_in(core, patient)) == (200, 200)


# Logout --------------------------------------------------------------------------------


def test_logout_ends_the_session_on_both_apis(
    core: ApiClient, reports: Any, patient: TestUser, engine: Engine
) -> None:
    other_session = _signed_in(core, patient)
    assert _opens_both(core, reports, patient) == (200, 200)
    response = core.post(LOGOUT, headers=_bearer(patient.access_token))
    assert response.status_code == 204
    assert _opens_both(core, reports, patient) == (401, 401)
    assert_problem(core.post(REFRESH, headers=_bearer(patient.refresh_token)), 401)
    assert_problem(core.post(LOGOUT, headers=_bearer(patient.access_token)), 401)
    assert _opens_both(core, reports, other_session) == (200, 200)
    assert len(_events(engine, "auth.logout", patient.username)) == 1


def test_logout_needs_an_access_token(core: ApiClient, patient: TestUser) -> None:
    assert_problem(core.post(LOGOUT), 401)
    assert_problem(core.post(LOGOUT, headers=_bearer(patient.refresh_token)), 401)


# Revocation on account changes -----------------------------------------------------------


def test_a_password_change_revokes_every_token_of_the_user(
    core: ApiClient, reports: Any, patient: TestUser, engine: Engine
) -> None:
    second = _signed_in(core, patient)
    new_password = "a-brand-new-passphrase"
    change = {"password": new_password, "current_password": PASSWORD}
    response = core.patch(f"/api/v1/users/{patient.id}", as_=patient, json=change)
    assert response.status_code == 200, response.json
    for user in (patient, second):
        assert _opens_both(core, reports, user) == (401, 401)
        assert_problem(core.post(REFRESH, headers=_bearer(user.refresh_token)), 401)
    [event] = _events(engine, "auth.revoked", patient.username)
    # Three: the factory's session of the new user, and the two signed in here.
    assert event["details"] == {"reason": "password_changed", "sessions": 3}
    # Signed in again with the new password, the same second: the new tokens work.
    assert _opens_both(core, reports, _signed_in(core, patient, new_password)) == (200, 200)


def test_a_role_change_revokes_every_token_of_the_user(
    core: ApiClient, reports: Any, patient: TestUser
) -> None:
    admin = core.user(Role.ADMIN)
    response = core.patch(f"/api/v1/users/{patient.id}", as_=admin, json={"role": "operator"})
    assert response.status_code == 200, response.json
    assert _opens_both(core, reports, patient) == (401, 401)
    again = _signed_in(core, patient)
    assert claims_of(again.access_token)["role"] == "operator"
    assert reports.get("/api/v1/users/", headers=_bearer(again.access_token)).status_code == 200


def test_an_email_change_revokes_nothing(core: ApiClient, reports: Any, patient: TestUser) -> None:
    response = core.patch(
        f"/api/v1/users/{patient.id}", as_=patient, json={"email": "new-address@example.com"}
    )
    assert response.status_code == 200
    assert _opens_both(core, reports, patient) == (200, 200)


def test_a_deleted_users_tokens_open_nothing_even_after_the_name_is_reused(
    core: ApiClient, reports: Any, patient: TestUser, engine: Engine, redis_client: redis.Redis
) -> None:
    assert core.delete(f"/api/v1/users/{patient.id}", as_=patient).status_code == 204
    assert _opens_both(core, reports, patient) == (401, 401)
    assert_problem(core.post(REFRESH, headers=_bearer(patient.refresh_token)), 401)
    # Someone else registers the same name and gets a report of their own.
    newcomer = core.user(Role.PATIENT, username=patient.username)
    item = checkup_item(newcomer.id, core.machine())
    assert (
        core.post("/api/v1/checkups/", as_=newcomer, json={"checkups": [item]}).status_code == 201
    )
    run_incremental_sync(engine=engine, redis_client=redis_client)
    assert _opens_both(core, reports, _signed_in(core, newcomer)) == (200, 200)
    assert _opens_both(core, reports, patient) == (401, 401)


# Where revocations are kept --------------------------------------------------------------


def test_revocations_are_one_redis_hash_that_expires(
    core: ApiClient, patient: TestUser, redis_client: redis.Redis, apps: tuple[Any, Any]
) -> None:
    assert core.post(LOGOUT, headers=_bearer(patient.access_token)).status_code == 204
    key = revocation_key(patient.username, patient.id)
    family = claims_of(patient.access_token)["fam"]
    assert redis_client.hkeys(key) == [f"f:{family}".encode()]
    refresh_lifetime = apps[0].config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds()
    assert refresh_lifetime < redis_client.ttl(key) <= refresh_lifetime + 60


def test_a_redis_that_lost_its_data_gets_the_ended_sessions_back_from_the_sync(
    core: ApiClient,
    reports: Any,
    patient: TestUser,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    assert core.post(LOGOUT, headers=_bearer(patient.access_token)).status_code == 204
    redis_client.flushdb()  # restarted empty: the reports and the revocations are gone
    run_incremental_sync(engine=engine, redis_client=redis_client)  # rebuilds by itself
    path = f"/api/v1/users/{patient.username}/"
    assert_problem(reports.get(path, headers=_bearer(patient.access_token)), 401)
    fresh = _signed_in(core, patient)
    assert reports.get(path, headers=_bearer(fresh.access_token)).status_code == 200


def test_the_core_api_checks_postgresql_while_redis_cannot_answer(
    database_url: str, engine: Engine, core: ApiClient, patient: TestUser
) -> None:
    # A Core API whose Redis is a port nobody listens on: its revocations come from the
    # session rows, so a logout made through the healthy API still holds there.
    settings = config.Testing()
    settings.DATABASE_URL = database_url
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    settings.STORE_TIMEOUT_SECONDS = 1
    cut_off = ApiClient(create_core_app(settings, engine=engine), None)  # type: ignore[arg-type]
    cut_off.client = cut_off.app.test_client()
    path = f"/api/v1/users/{patient.id}"
    assert cut_off.get(path, headers=_bearer(patient.access_token)).status_code == 200
    assert core.post(LOGOUT, headers=_bearer(patient.access_token)).status_code == 204
    assert_problem(cut_off.get(path, headers=_bearer(patient.access_token)), 401)


def test_the_reports_api_answers_503_when_it_cannot_check_revocation(
    patient: TestUser, apps: tuple[Any, Any]
) -> None:
    settings = config.Testing()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    settings.STORE_TIMEOUT_SECONDS = 1
    blind = create_reports_app(settings).test_client()
    response = blind.get("/api/v1/users/", headers=_bearer(patient.access_token))
    assert_problem(response, 503)


# Keys ----------------------------------------------------------------------------------


def test_jwks_publishes_the_key_that_verifies_the_tokens(
    core: ApiClient, patient: TestUser
) -> None:
    response = core.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "Authorization" not in response.request.headers
    jwks = response.json
    kid = pyjwt.get_unverified_header(patient.access_token)["kid"]
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    assert set(jwk) == {"kty", "crv", "x", "alg", "use", "kid"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    key = pyjwt.PyJWK(jwk).key
    claims = pyjwt.decode(patient.access_token, key, algorithms=["EdDSA"], issuer="healthapp")
    assert claims["sub"] == str(patient.id)


def test_the_reports_api_holds_no_private_key_and_mints_nothing(apps: tuple[Any, Any]) -> None:
    _core, reports_app = apps
    assert "healthapp.token_issuer" not in reports_app.extensions
    checks = reports_app.extensions["healthapp.token_checks"]
    keys = checks.verifier._keys
    assert keys
    assert all(not hasattr(key, "sign") for key in keys.values())
    assert reports_app.test_client().get("/.well-known/jwks.json").status_code == 404
    assert "JWT_PRIVATE_KEY" not in reports_app.config
