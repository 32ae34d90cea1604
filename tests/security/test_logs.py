"""No password, token, secret key or health value reaches a log line (SPEC §3, §4).

A whole cycle runs on both APIs and the sync with logging at DEBUG: registration,
a failed and a good login, a refresh, an upload (and a rejected one), a sync pass and
report reads. Every captured record and everything written to the log stream is searched.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from tests.assertions import assert_problem
from tests.factories import ApiClient

PASSWORD = "zebra-passphrase-5521"
SYSTOLIC = 187
NOTES = "zebra-marker-8841"
WEIGHT = 143.7


def _run_cycle(api: ApiClient, reports: Any, sync: Any) -> dict[str, str]:
    """Register, log in, upload, sync and read; the credentials and tokens used."""
    client = api.client
    registered = client.post(
        "/api/v1/users/",
        json={"username": "zebra", "email": "zebra@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.json
    user_id = registered.json["id"]
    wrong = client.post(
        "/api/v1/auth/token", json={"username": "zebra", "password": PASSWORD + "x"}
    )
    assert_problem(wrong, 401)
    tokens = client.post("/api/v1/auth/token", json={"username": "zebra", "password": PASSWORD})
    assert tokens.status_code == 200
    access, refresh = tokens.json["access_token"], tokens.json["refresh_token"]
    renewed = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {refresh}"})
    assert renewed.status_code == 200
    auth = {"Authorization": f"Bearer {access}"}
    machine = str(api.machine())
    base = {"user_id": user_id, "machine_id": machine, "taken_at": "2026-01-15T09:30:00Z"}
    items = [
        {
            **base,
            "id": "0b6f7e52-6a37-4d4e-9f59-4d0f3b1c2a01",
            "checkup_type": "blood_pressure",
            "information": {"systolic": SYSTOLIC, "diastolic": 97, "notes": NOTES},
            "test_taken_by": NOTES,
        },
        {
            **base,
            "id": "0b6f7e52-6a37-4d4e-9f59-4d0f3b1c2a02",
            "checkup_type": "body_weight",
            "information": {"kg": WEIGHT},
        },
    ]
    uploaded = client.post("/api/v1/checkups/", json={"checkups": items}, headers=auth)
    assert uploaded.status_code == 201, uploaded.json
    bad = {**items[0], "id": "0b6f7e52-6a37-4d4e-9f59-4d0f3b1c2a03", "test_taken_by": NOTES + "\0"}
    bad["information"] = {"systolic": SYSTOLIC, "diastolic": 400, "notes": NOTES}
    assert_problem(client.post("/api/v1/checkups/", json={"checkups": [bad]}, headers=auth), 422)
    conflict = {**items[1], "information": {"kg": WEIGHT + 1}}
    assert_problem(
        client.post("/api/v1/checkups/", json={"checkups": [conflict]}, headers=auth), 409
    )
    sync()
    report = reports.get("/api/v1/users/zebra/", headers=auth)
    assert report.status_code == 200
    assert report.json["checkups"][0]["checkup"]
    etag = report.headers["ETag"]
    assert (
        reports.get("/api/v1/users/zebra/", headers={**auth, "If-None-Match": etag}).status_code
        == 304
    )
    assert client.get(f"/api/v1/checkups/?user_id={user_id}", headers=auth).status_code == 200
    return {
        "access token": access,
        "refresh token": refresh,
        "new access token": renewed.json["access_token"],
    }


def _attributes(record: logging.LogRecord) -> dict[str, Any]:
    """Every attribute of ``record`` but the line number of the logging call: that may be
    any number (the systolic value included) and says nothing about anyone."""
    return {name: value for name, value in record.__dict__.items() if name != "lineno"}


def test_no_secret_or_health_value_is_logged(
    app: Any,
    reports_app: Any,
    api: ApiClient,
    reports: Any,
    sync: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As with LOG_LEVEL=DEBUG; libraries keep their own levels (SQLAlchemy's stays WARNING
    # unless echo is set, which the app never does).
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="healthapp")
    tokens = _run_cycle(api, reports, sync)

    lines = [f"{record.getMessage()} {_attributes(record)}" for record in caplog.records]
    captured = capsys.readouterr()
    lines += (captured.out + captured.err).splitlines()
    assert len(caplog.records) >= 10  # the access log and the sync did log
    forbidden = {
        **tokens,
        "password": PASSWORD,
        "notes": NOTES,
        "SECRET_KEY": app.config["SECRET_KEY"],
        "the private key": _private_key_body(app),
    }
    health_values = {
        "systolic": re.compile(rf"(?<![\w.]){SYSTOLIC}(?![\w.])"),
        # Bounded like a number of its own: a record's "created" timestamp (…0143.79…) is
        # not a weight.
        "weight": re.compile(rf"(?<![\w.]){re.escape(str(WEIGHT))}(?!\d)"),
    }
    for line in lines:
        for what, value in forbidden.items():
            assert value not in line, f"{what} in a log line: {line[:300]}"
        for what, pattern in health_values.items():
            assert not pattern.search(line), f"{what} in a log line: {line[:300]}"


def test_an_unexpected_database_error_logs_no_value(
    database_url: str,
    redis_url: str,
    engine: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # PostgreSQL quotes a rejected value in its message, and SQLAlchemy added the statement's
    # parameters: a 500 once logged the health data of the request that caused it.
    from sqlalchemy import text

    from healthapp.database import db
    from tests.security.apps import build_apps

    core, _reports = build_apps(database_url=database_url, redis_url=redis_url, engine=engine)

    @core.get("/boom")
    def boom() -> dict[str, int]:
        db.session.execute(text("SELECT CAST(:value AS integer)"), {"value": NOTES})
        return {}

    boom.allowed_roles = None  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)
    response = core.test_client().get("/boom")
    body = assert_problem(response, 500)
    assert NOTES not in response.get_data(as_text=True)
    assert "unhandled error" not in body["detail"]
    logged = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    errors = [line for line in logged if "unhandled error: DataError" in line]
    assert errors, logged  # the type and the stack are still logged
    assert "boom" in errors[0]
    for line in logged:
        assert NOTES not in line, line[:300]


def _private_key_body(app: Any) -> str:
    """The base64 body of the Core API's signing key, as it would appear if logged."""
    from cryptography.hazmat.primitives import serialization

    from healthapp.sessions.service import TOKEN_ISSUER_EXTENSION

    key = app.extensions[TOKEN_ISSUER_EXTENSION].keys.signing
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem.splitlines()[1]
