"""One request id per request, stored with the outbox rows it causes and logged by the sync."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text

from healthapp.domain.roles import Role
from healthapp.sync.passes import run_incremental_sync
from tests.factories import checkup_session


def _sync_batch_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        record.msg
        for record in caplog.records
        if record.name == "healthapp.sync"
        and isinstance(record.msg, dict)
        and record.msg.get("event") == "sync batch"
    ]


def test_upload_request_id_reaches_the_sync_log(api, engine, redis_client, caplog):
    operator = api.user(Role.OPERATOR)
    first, second = api.user(), api.user()
    machine = api.machine()
    items = checkup_session(first.id, machine, 3) + checkup_session(second.id, machine, 2)

    r = api.post(
        "/api/v1/checkups/", operator, json={"checkups": items}, headers={"X-Request-ID": "abc-123"}
    )
    assert r.status_code == 201, r.json
    assert r.headers["X-Request-ID"] == "abc-123"
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT username, request_id FROM report_outbox WHERE request_id IS NOT NULL")
        ).all()
    assert sorted(stored) == sorted([(first.username, "abc-123"), (second.username, "abc-123")])

    with caplog.at_level(logging.INFO, logger="healthapp.sync"):
        stats = run_incremental_sync(engine=engine, redis_client=redis_client)

    assert stats.documents_written >= 2
    lines = _sync_batch_lines(caplog)
    assert any("abc-123" in line["request_ids"] for line in lines), lines


def test_each_batch_names_only_its_own_requests(api, engine, redis_client, caplog):
    operator = api.user(Role.OPERATOR)
    machine = api.machine()
    patients = [api.user() for _ in range(2)]
    for number, patient in enumerate(patients):
        r = api.post(
            "/api/v1/checkups/",
            operator,
            json={"checkups": checkup_session(patient.id, machine, 1)},
            headers={"X-Request-ID": f"upload-{number}"},
        )
        assert r.status_code == 201

    with caplog.at_level(logging.INFO, logger="healthapp.sync"):
        run_incremental_sync(engine=engine, redis_client=redis_client, batch_size=1)

    named = [line["request_ids"] for line in _sync_batch_lines(caplog) if line["request_ids"]]
    assert sorted(map(tuple, named)) == [("upload-0",), ("upload-1",)]


def test_profile_change_carries_a_generated_id_when_the_header_is_not_sane(api, engine):
    patient = api.user()
    r = api.post(
        f"/api/v1/users/{patient.id}/profile",
        patient,
        json={"sex": "female"},
        headers={"X-Request-ID": "not sane; has spaces"},
    )
    assert r.status_code == 201, r.json
    generated = r.headers["X-Request-ID"]
    assert generated != "not sane; has spaces"
    assert len(generated) == 32
    with engine.connect() as conn:
        ids = conn.execute(
            text("SELECT request_id FROM report_outbox WHERE username = :u"),
            {"u": patient.username},
        ).scalars()
        assert generated in list(ids)


def test_changes_outside_a_request_store_no_request_id(api, engine):
    # api.user() creates the user through the service, outside any request.
    patient = api.user()
    with engine.connect() as conn:
        ids = conn.execute(
            text("SELECT request_id FROM report_outbox WHERE username = :u"),
            {"u": patient.username},
        ).scalars()
        assert list(ids) == [None]
