"""The read side is apart: the Reports API builds, serves and renders a report in an
interpreter that never loads SQLAlchemy or the PostgreSQL driver."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from healthapp.domain.roles import Role
from tests.factories import insert_checkups

#: Builds the Reports API from the environment, reads a report's stored first page and
#: renders a filtered page of it, then names every database module it loaded.
READ_A_REPORT = """
import sys
# prelude
from healthapp.reports.app import create_app

username, token = sys.argv[1:]
client = create_app().test_client()
headers = {"Authorization": "Bearer " + token}
path = "/api/v1/users/" + username + "/"
first = client.get(path, headers=headers)
assert first.status_code == 200 and len(first.json["checkups"]) == 8, first.get_data()
page = client.get(path + "?limit=5&checkup_type=heart_rate", headers=headers)
assert page.status_code == 200 and len(page.json["checkups"]) == 5, page.get_data()
assert page.json["next_cursor"], page.json
loaded = {m.partition(".")[0] for m in sys.modules if m.startswith(("sqlalchemy", "psycopg"))}
assert not loaded, "database modules loaded: " + ", ".join(sorted(loaded))
"""


def _read_a_report(redis_url: str, username: str, token: str, *, prelude: str = "") -> Any:
    env = {**os.environ, "HEALTHAPP_ENV": "testing", "REDIS_URL": redis_url}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", READ_A_REPORT.replace("# prelude", prelude), username, token],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def synced_patient(api, engine, sync):
    """A patient with eight check-ups in a synced report."""
    patient = api.user(Role.PATIENT)
    insert_checkups(engine, user_id=patient.id, machine_id=api.machine(), count=8)
    sync()
    return patient


def test_reports_api_loads_no_database_code(synced_patient, redis_url):
    done = _read_a_report(redis_url, synced_patient.username, synced_patient.access_token)
    assert done.returncode == 0, done.stderr


def test_the_check_sees_database_code_when_it_is_loaded(synced_patient, redis_url):
    done = _read_a_report(
        redis_url,
        synced_patient.username,
        synced_patient.access_token,
        prelude="import healthapp.app  # the Core API: SQLAlchemy and psycopg",
    )
    assert done.returncode != 0
    assert "database modules loaded: " in done.stderr
    assert "sqlalchemy" in done.stderr
