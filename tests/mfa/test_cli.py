"""``healthapp mfa-reset``: an admin who lost both the authenticator and the recovery codes."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine, text

from healthapp.cli import main
from healthapp.domain.roles import Role
from healthapp.problems import SECOND_FACTOR_ENROLMENT_REQUIRED
from tests.factories import ApiClient
from tests.mfa.enrolment import code_at, enrol, login


def _reset(database_url: str, username: str) -> Any:
    return CliRunner().invoke(main, ["mfa-reset", username], env={"DATABASE_URL": database_url})


def test_reset_removes_the_factor_and_is_audited(
    app: Any, api: ApiClient, engine: Engine, database_url: str, monkeypatch: Any
) -> None:
    enrolled = enrol(api, api.user(Role.ADMIN))
    result = _reset(database_url, enrolled.user.username.upper())
    assert result.exit_code == 0, result.output
    assert f"second factor of {enrolled.user.username} removed" in result.output
    assert enrolled.secret not in result.output

    # The old codes are gone with it; with the requirement on, the admin enrols again.
    monkeypatch.setitem(app.config, "STAFF_MFA_REQUIRED", True)
    refused = login(api, enrolled.user, enrolled.recovery_codes[0])
    assert refused.json["type"] == SECOND_FACTOR_ENROLMENT_REQUIRED
    renewed = enrol(api, enrolled.user)  # the password alone, now
    assert login(api, enrolled.user, code_at(renewed.secret, 1)).status_code == 200
    with engine.connect() as conn:
        events = conn.execute(
            text(
                "SELECT actor_username, subject_username FROM audit_events"
                " WHERE action = 'mfa.reset'"
            )
        ).all()
    assert [tuple(e) for e in events] == [("system", enrolled.user.username)]


def test_reset_of_an_unknown_user_or_one_without_a_factor_fails(
    api: ApiClient, database_url: str
) -> None:
    unknown = _reset(database_url, "nobody-at-all")
    assert unknown.exit_code == 1
    assert "no user is called nobody-at-all" in unknown.output
    admin = api.user(Role.ADMIN)
    nothing = _reset(database_url, admin.username)
    assert nothing.exit_code == 1
    assert "has no second factor" in nothing.output
