"""The staff second factor over HTTP (SPEC §14): enrol, confirm, sign in with a code."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from healthapp.audit.models import AuditEvent
from healthapp.domain.roles import Role
from healthapp.problems import SECOND_FACTOR_ENROLMENT_REQUIRED, SECOND_FACTOR_REQUIRED
from tests.assertions import assert_problem, error_locs
from tests.factories import PASSWORD, ApiClient
from tests.mfa.enrolment import (
    CONFIRM,
    ENROL,
    TOKEN,
    begin,
    code_at,
    confirm,
    enrol,
    login,
    wrong_code,
)

STAFF = [Role.OPERATOR, Role.ADMIN]


def _assert_second_factor_required(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert body["type"] == SECOND_FACTOR_REQUIRED
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "access_token" not in response.get_data(as_text=True)
    return body


def _events(engine: Engine, action: str) -> list[AuditEvent]:
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == action)
                .order_by(AuditEvent.occurred_at)
            )
        )


# Enrolling and signing in ----------------------------------------------------------------


@pytest.mark.parametrize("role", STAFF, ids=[r.value for r in STAFF])
def test_enrol_confirm_then_sign_in_with_a_code(api: ApiClient, role: Role) -> None:
    user = api.user(role)
    started = begin(api, user)
    assert started.status_code == 200, started.json
    assert started.headers["Cache-Control"] == "no-store"
    secret = started.json["secret"]
    assert len(secret) == 32
    uri = started.json["otpauth_uri"]
    assert uri.startswith("otpauth://totp/MyHealthApp:")
    assert f"secret={secret}" in uri
    assert user.username in uri

    # Until it is confirmed, the new authenticator guards nothing: the password suffices.
    assert login(api, user).status_code == 200

    confirmed = confirm(api, user, code_at(secret))
    assert confirmed.status_code == 200, confirmed.json
    assert confirmed.headers["Cache-Control"] == "no-store"
    recovery_codes = confirmed.json["recovery_codes"]
    assert len(recovery_codes) == 10
    assert len(set(recovery_codes)) == 10
    assert all(len(code.replace("-", "")) == 20 for code in recovery_codes)  # 80 bits each

    _assert_second_factor_required(login(api, user))
    signed_in = login(api, user, code_at(secret, 1))
    assert signed_in.status_code == 200, signed_in.json
    assert (
        api.get(
            "/api/v1/users/", headers={"Authorization": f"Bearer {signed_in.json['access_token']}"}
        ).status_code
        == 200
    )


def test_a_wrong_code_is_refused_with_the_second_factor_type(api: ApiClient) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    body = _assert_second_factor_required(login(api, enrolled.user, wrong_code(enrolled.secret)))
    assert "wrong or was already used" in body["detail"]
    # A code from outside the window (five minutes ahead) is as wrong.
    _assert_second_factor_required(login(api, enrolled.user, code_at(enrolled.secret, 10)))


def test_a_code_is_accepted_once(api: ApiClient) -> None:
    enrolled = enrol(api, api.user(Role.OPERATOR))
    code = code_at(enrolled.secret, 1)
    assert login(api, enrolled.user, code).status_code == 200
    _assert_second_factor_required(login(api, enrolled.user, code))  # replayed
    # An earlier step's code, still in the window, is refused once a later one was used.
    _assert_second_factor_required(login(api, enrolled.user, code_at(enrolled.secret, 0)))


def test_the_confirming_code_does_not_also_sign_in(api: ApiClient) -> None:
    user = api.user(Role.OPERATOR)
    secret = begin(api, user).json["secret"]
    code = code_at(secret)
    assert confirm(api, user, code).status_code == 200
    _assert_second_factor_required(login(api, user, code))


def test_two_sign_ins_with_one_code_at_once_admit_one(app: Any, api: ApiClient) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    code = code_at(enrolled.secret, 1)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def attempt() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(
            TOKEN, json={"username": enrolled.user.username, "password": PASSWORD, "otp": code}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200, 401, 401, 401]


def test_a_wrong_password_with_a_factor_is_the_plain_wrong_password_answer(
    api: ApiClient,
) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    patient = api.user()
    for otp in (None, code_at(enrolled.secret, 1)):
        body = {"username": enrolled.user.username, "password": "not-the-password"}
        if otp is not None:
            body["otp"] = otp
        staff = api.post(TOKEN, json=body)
        plain = api.post(TOKEN, json={"username": patient.username, "password": "nope-nope"})
        assert_problem(staff, 401)
        assert staff.json == plain.json  # nothing says the account has a second factor
    # The code sent with the wrong password was not spent.
    assert login(api, enrolled.user, code_at(enrolled.secret, 1)).status_code == 200


# Recovery codes --------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once(api: ApiClient, engine: Engine) -> None:
    enrolled = enrol(api, api.user(Role.OPERATOR))
    first, second, *_ = enrolled.recovery_codes
    assert login(api, enrolled.user, first).status_code == 200
    _assert_second_factor_required(login(api, enrolled.user, first))
    # Dashes are optional and case does not matter.
    assert login(api, enrolled.user, second.replace("-", "").upper()).status_code == 200
    events = _events(engine, "mfa.recovery_code_use")
    assert [(e.subject_username, e.actor_username) for e in events] == [
        (enrolled.user.username, enrolled.user.username)
    ] * 2


def test_recovery_codes_are_the_accounts_own(api: ApiClient) -> None:
    one, other = enrol(api, api.user(Role.OPERATOR)), enrol(api, api.user(Role.OPERATOR))
    _assert_second_factor_required(login(api, one.user, other.recovery_codes[0]))
    assert login(api, other.user, other.recovery_codes[0]).status_code == 200


def test_a_made_up_recovery_code_is_wrong(api: ApiClient) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    _assert_second_factor_required(login(api, enrolled.user, "00000-00000-00000-00000"))


# Required for staff ----------------------------------------------------------------------


@pytest.mark.usefixtures("mfa_required")
@pytest.mark.parametrize("role", STAFF, ids=[r.value for r in STAFF])
def test_required_second_factor_blocks_staff_until_they_enrol(api: ApiClient, role: Role) -> None:
    user = api.user(role)
    refused = login(api, user)
    body = assert_problem(refused, 401)
    assert body["type"] == SECOND_FACTOR_ENROLMENT_REQUIRED
    assert body["type"] != SECOND_FACTOR_REQUIRED
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "/api/v1/auth/mfa/totp" in body["detail"]
    # A pending authenticator is not enough either.
    secret = begin(api, user).json["secret"]
    assert login(api, user).json["type"] == SECOND_FACTOR_ENROLMENT_REQUIRED
    assert login(api, user, code_at(secret, 1)).json["type"] == SECOND_FACTOR_ENROLMENT_REQUIRED
    assert confirm(api, user, code_at(secret)).status_code == 200
    _assert_second_factor_required(login(api, user))
    assert login(api, user, code_at(secret, 1)).status_code == 200


@pytest.mark.usefixtures("mfa_required")
def test_required_second_factor_does_not_concern_patients(api: ApiClient) -> None:
    patient = api.user()
    assert login(api, patient).status_code == 200


def test_without_the_requirement_staff_without_a_factor_sign_in(api: ApiClient) -> None:
    assert login(api, api.user(Role.ADMIN)).status_code == 200


@pytest.mark.usefixtures("mfa_required")
def test_the_wrong_password_says_nothing_of_the_requirement(api: ApiClient) -> None:
    admin = api.user(Role.ADMIN)
    refused = api.post(TOKEN, json={"username": admin.username, "password": "wrong-password"})
    unknown = api.post(TOKEN, json={"username": "nobody-at-all", "password": "wrong-password"})
    assert refused.json == unknown.json
    assert refused.json["type"] == "https://myhealthapp.example/problems/401"


def test_a_demoted_admin_still_needs_the_code(api: ApiClient) -> None:
    chief, enrolled = api.user(Role.ADMIN), enrol(api, api.user(Role.ADMIN))
    demoted = api.patch(f"/api/v1/users/{enrolled.user.id}", as_=chief, json={"role": "patient"})
    assert demoted.status_code == 200
    _assert_second_factor_required(login(api, enrolled.user))
    assert login(api, enrolled.user, code_at(enrolled.secret, 1)).status_code == 200


# Replacing the authenticator -------------------------------------------------------------


def test_replacing_an_authenticator_needs_a_current_code(api: ApiClient, engine: Engine) -> None:
    old = enrol(api, api.user(Role.ADMIN))
    body = _assert_second_factor_required(begin(api, old.user))
    assert "replacing it" in body["detail"]
    _assert_second_factor_required(begin(api, old.user, wrong_code(old.secret)))

    started = begin(api, old.user, code_at(old.secret, 1))
    assert started.status_code == 200, started.json
    new_secret = started.json["secret"]
    assert new_secret != old.secret
    # The old authenticator guards the account until the new one is confirmed...
    _assert_second_factor_required(login(api, old.user, code_at(new_secret, 1)))
    assert confirm(api, old.user, code_at(new_secret)).status_code == 200
    # ...and then no longer; nor do the old recovery codes.
    _assert_second_factor_required(login(api, old.user, code_at(old.secret, 1)))
    _assert_second_factor_required(login(api, old.user, old.recovery_codes[0]))
    assert login(api, old.user, code_at(new_secret, 1)).status_code == 200
    changes = [e.details.get("change") for e in _events(engine, "mfa.enrol")]
    assert changes == ["begin", "create", "begin", "replace"]


def test_a_lost_authenticator_is_replaced_with_a_recovery_code(api: ApiClient) -> None:
    old = enrol(api, api.user(Role.OPERATOR))
    new = enrol(api, old.user, code=old.recovery_codes[3])
    assert login(api, old.user, code_at(new.secret, 1)).status_code == 200
    _assert_second_factor_required(begin(api, old.user, old.recovery_codes[3]))  # used up


def test_a_replaced_authenticator_ends_every_session_begun_with_the_old_one(
    api: ApiClient, engine: Engine
) -> None:
    old = enrol(api, api.user(Role.OPERATOR))
    signed_in = login(api, old.user, code_at(old.secret, 1)).json
    assert api.get("/api/v1/users/", headers=_bearer(signed_in["access_token"])).status_code == 200
    enrol(api, old.user, code=old.recovery_codes[0])
    assert_problem(api.get("/api/v1/users/", headers=_bearer(signed_in["access_token"])), 401)
    refreshed = api.post("/api/v1/auth/refresh", headers=_bearer(signed_in["refresh_token"]))
    assert_problem(refreshed, 401)
    [revoked] = _events(engine, "auth.revoked")
    assert revoked.details == {"reason": "second_factor_changed", "sessions": 2}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_enrolment_is_audited_as_the_user(api: ApiClient, engine: Engine) -> None:
    enrolled = enrol(api, api.user(Role.OPERATOR))
    events = _events(engine, "mfa.enrol")
    assert [(e.actor_id, e.actor_role, e.subject_id, e.details) for e in events] == [
        (enrolled.user.id, "operator", enrolled.user.id, {"change": "begin"}),
        (enrolled.user.id, "operator", enrolled.user.id, {"change": "create"}),
    ]
    assert all(e.request_id for e in events)


# Refusals of the enrolment ---------------------------------------------------------------


def test_patients_do_not_enrol(api: ApiClient) -> None:
    patient = api.user()
    assert_problem(begin(api, patient), 403)
    assert_problem(confirm(api, patient, "123456"), 403)


@pytest.mark.parametrize("path", [ENROL, CONFIRM])
def test_enrolment_with_a_wrong_password_is_the_login_answer(api: ApiClient, path: str) -> None:
    admin = api.user(Role.ADMIN)
    body = {"username": admin.username, "password": "not-the-password", "code": "123456"}
    refused = api.post(path, json=body)
    unknown = api.post(path, json={**body, "username": "nobody-at-all"})
    login_refused = api.post(TOKEN, json={"username": "nobody", "password": "not-it"})
    assert_problem(refused, 401)
    assert refused.json == unknown.json == login_refused.json


def test_confirming_without_an_enrolment_is_a_conflict(api: ApiClient) -> None:
    assert_problem(confirm(api, api.user(Role.ADMIN), "123456"), 409)


def test_confirming_with_a_wrong_code_is_422_and_keeps_the_enrolment(api: ApiClient) -> None:
    user = api.user(Role.ADMIN)
    secret = begin(api, user).json["secret"]
    problem = assert_problem(confirm(api, user, wrong_code(secret)), 422)
    assert error_locs(problem) == [["code"]]
    assert confirm(api, user, code_at(secret)).status_code == 200


def test_an_enrolment_expires(api: ApiClient, engine: Engine) -> None:
    user = api.user(Role.ADMIN)
    secret = begin(api, user).json["secret"]
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE totp_factors SET pending_since = now() - interval '11 minutes'"
                " WHERE user_id = :id"
            ),
            {"id": user.id},
        )
    problem = assert_problem(confirm(api, user, code_at(secret)), 409)
    assert "expired" in problem["detail"]


@pytest.mark.parametrize(
    ("path", "body", "locs"),
    [
        (ENROL, {"username": "a", "password": "b", "code": "12345"}, [["code"]]),
        (ENROL, {"username": "a", "password": "b", "code": "١٢٣٤٥٦"}, [["code"]]),
        (ENROL, {"username": "a"}, [["password"]]),
        (CONFIRM, {"username": "a", "password": "b"}, [["code"]]),
        (
            CONFIRM,
            {"username": "a", "password": "b", "code": "abcde-12345-abcde-12345"},
            [["code"]],
        ),
        (CONFIRM, {"username": "a", "password": "b", "code": "123456", "x": 1}, [["x"]]),
        (TOKEN, {"username": "a", "password": "b", "otp": "1234567"}, [["otp"]]),
        (TOKEN, {"username": "a", "password": "b", "otp": 123456}, [["otp"]]),
    ],
)
def test_malformed_codes_are_422(
    api: ApiClient, path: str, body: dict[str, Any], locs: list[list[str]]
) -> None:
    assert sorted(error_locs(assert_problem(api.post(path, json=body), 422))) == locs


# Guessing codes --------------------------------------------------------------------------


def test_five_wrong_codes_in_a_row_make_the_next_try_wait(api: ApiClient, engine: Engine) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    wrong = wrong_code(enrolled.secret)
    for _ in range(5):
        _assert_second_factor_required(login(api, enrolled.user, wrong))
    # Even the right code waits now: guessing is bounded, whatever the rate limits allow.
    waiting = login(api, enrolled.user, code_at(enrolled.secret, 1))
    assert_problem(waiting, 429)
    assert 0 < int(waiting.headers["Retry-After"]) <= 15 * 60
    # A right password is still needed to learn that.
    wrong_password = api.post(
        TOKEN, json={"username": enrolled.user.username, "password": "not-it-at-all"}
    )
    assert_problem(wrong_password, 401)

    with engine.begin() as conn:  # the lockout is over
        conn.execute(
            text("UPDATE totp_factors SET last_failed_at = :t WHERE user_id = :id"),
            {"t": datetime.now(UTC) - timedelta(minutes=16), "id": enrolled.user.id},
        )
    assert login(api, enrolled.user, code_at(enrolled.secret, 1)).status_code == 200
    with engine.connect() as conn:
        failed = conn.execute(
            text("SELECT failed_attempts FROM totp_factors WHERE user_id = :id"),
            {"id": enrolled.user.id},
        ).scalar_one()
    assert failed == 0


def test_after_a_lockout_each_wrong_code_locks_again(api: ApiClient, engine: Engine) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    wrong = wrong_code(enrolled.secret)
    for _ in range(5):
        login(api, enrolled.user, wrong)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE totp_factors SET last_failed_at = now() - interval '16 minutes'"
                " WHERE user_id = :id"
            ),
            {"id": enrolled.user.id},
        )
    _assert_second_factor_required(login(api, enrolled.user, wrong))
    assert_problem(login(api, enrolled.user, code_at(enrolled.secret, 1)), 429)


# The answers and the document --------------------------------------------------------------


def test_the_secret_is_never_answered_again(api: ApiClient) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    token = login(api, enrolled.user, code_at(enrolled.secret, 1)).json["access_token"]
    own = api.get(f"/api/v1/users/{enrolled.user.id}", headers={"Authorization": f"Bearer {token}"})
    assert own.status_code == 200
    text_of_answer = own.get_data(as_text=True)
    assert enrolled.secret not in text_of_answer
    assert not any(code in text_of_answer for code in enrolled.recovery_codes)


def test_openapi_documents_the_second_factor(api: ApiClient) -> None:
    document = api.get("/openapi.json").json
    for path in (ENROL, CONFIRM):
        operation = document["paths"][path]["post"]
        assert {"200", "401", "403", "409", "422", "429"} <= set(operation["responses"])
        assert not operation.get("security")
    enrol_401 = document["paths"][ENROL]["post"]["responses"]["401"]["description"]
    assert SECOND_FACTOR_REQUIRED in enrol_401
    token_body = document["components"]["schemas"]["TokenCreate"]
    assert "otp" in token_body["properties"]
    assert "otp" not in token_body.get("required", [])


def test_secrets_and_codes_stay_out_of_the_logs(
    api: ApiClient, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("DEBUG")
    enrolled = enrol(api, api.user(Role.ADMIN))
    code = code_at(enrolled.secret, 1)
    login(api, enrolled.user, code)
    login(api, enrolled.user, code)  # refused: logged as a 401 at most
    login(api, enrolled.user, enrolled.recovery_codes[0])
    logged = caplog.text + "".join(capsys.readouterr())
    for secret in (enrolled.secret, code, *enrolled.recovery_codes):
        assert secret not in logged
