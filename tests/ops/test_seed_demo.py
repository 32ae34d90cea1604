"""``healthapp seed-demo``: synthetic patients through the services, then a sync."""

from __future__ import annotations

import itertools
import random
import re
import uuid
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import text

from healthapp.cli import main
from healthapp.demo import _field_bounds, checkup_history, make_person
from healthapp.domain.checkup_types import REGISTRY
from healthapp.reports.store import CheckupFilter, ReportStore


def _run(env: dict[str, str], *args: str, stdin: str | None = None):
    return CliRunner().invoke(main, ["seed-demo", *args], env=env, input=stdin)


def test_seed_demo_writes_valid_histories_and_syncs_them(
    client, engine, database_url, redis_url, redis_client
):
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    result = _run(env, "--users", "3", "--checkups-per-user", "25", "--seed", "11")

    assert result.exit_code == 0, result.output
    assert "seeded 3 patients" in result.output
    assert "75 check-ups" in result.output
    password = re.search(r"password \(shown once\): (\S+)", result.output).group(1)
    assert len(password) >= 12
    with engine.connect() as conn:
        users = conn.execute(
            text(
                "SELECT u.username, u.role, u.email, p.date_of_birth FROM users u"
                " JOIN profiles p ON p.user_id = u.id ORDER BY u.username"
            )
        ).all()
        rows = conn.execute(
            text("SELECT checkup_type, information, taken_at, user_id, uploaded_by FROM checkups")
        ).all()
        pending = conn.execute(text("SELECT count(*) FROM report_outbox")).scalar_one()
    assert [row.role for row in users] == ["patient"] * 3
    assert all(row.username.startswith("demo.") for row in users)
    assert all(row.email.endswith("@example.com") for row in users)
    assert len(rows) == 75
    now = datetime.now(UTC)
    for row in rows:
        REGISTRY[row.checkup_type].information.model_validate(row.information)
        primary = REGISTRY[row.checkup_type].primary
        low, high = _field_bounds(row.checkup_type, primary)
        assert low <= row.information[primary] <= high
        assert now - timedelta(days=367) <= row.taken_at <= now
        assert row.uploaded_by == row.user_id  # as the patient's phone uploads them
    assert len({row.checkup_type for row in rows}) >= 3
    assert pending == 0

    store = ReportStore(redis_client)
    for row in users:
        page = store.get_report(row.username, filters=CheckupFilter(), limit=1000)
        assert page is not None
        assert page.meta["count"] == 25
        assert page.meta["profile"]["date_of_birth"] == row.date_of_birth.isoformat()

    login = client.post(
        "/api/v1/auth/token", json={"username": users[0].username, "password": password}
    )
    assert login.status_code == 200

    again = _run(env, "--users", "1", "--checkups-per-user", "1")
    assert again.exit_code == 1
    assert "choose another --prefix" in again.output


def test_password_from_stdin_is_not_printed(client, engine, database_url, redis_url, redis_client):
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    secret = "a-demo-passphrase-from-stdin"
    result = _run(
        env,
        "--users",
        "1",
        "--checkups-per-user",
        "2",
        "--prefix",
        "st",
        "--password-stdin",
        stdin=secret + "\n",
    )
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert "shown once" not in result.output
    with engine.connect() as conn:
        username = conn.execute(
            text("SELECT username FROM users WHERE username LIKE 'st.%'")
        ).scalar_one()
    login = client.post("/api/v1/auth/token", json={"username": username, "password": secret})
    assert login.status_code == 200


def test_bad_options_are_refused_before_anything_is_written():
    runner = CliRunner()
    assert runner.invoke(main, ["seed-demo", "--users", "0"]).exit_code == 2
    bad_prefix = runner.invoke(main, ["seed-demo", "--prefix", "Not Valid"])
    assert bad_prefix.exit_code == 2
    assert "--prefix" in bad_prefix.output
    short = runner.invoke(main, ["seed-demo", "--password-stdin"], input="short\n")
    assert short.exit_code == 1
    assert "at least" in short.output


def _history(seed: int, count: int = 300) -> list[dict]:
    rng = random.Random(seed)
    end = datetime(2026, 1, 1, tzinfo=UTC)
    person = make_person(rng, prefix="demo", number=1, end=end.date())
    machines = {name: [uuid.UUID(int=n + 1)] for n, name in enumerate(REGISTRY)}
    return checkup_history(
        rng, person, user_id=uuid.UUID(int=99), machines=machines, count=count, end=end, days=365
    )


def test_same_seed_same_history_other_seed_other_history():
    assert _history(3) == _history(3)
    assert _history(3) != _history(4)


def test_readings_drift_around_a_personal_baseline():
    for seed in range(5):
        items = _history(seed, count=1500)
        taken = [item["taken_at"] for item in items]
        assert taken == sorted(taken)
        weights = [i["information"]["kg"] for i in items if i["checkup_type"] == "body_weight"]
        systolic = [
            i["information"]["systolic"] for i in items if i["checkup_type"] == "blood_pressure"
        ]
        # Not constant, but a person stays themself: within a band, small steps.
        assert len(set(weights)) > 10
        assert max(weights) - min(weights) < 15
        steps = [abs(b - a) for a, b in itertools.pairwise(weights)]
        assert sum(steps) / len(steps) < 2
        assert max(systolic) - min(systolic) < 70
        for item in items:
            if item["checkup_type"] == "blood_pressure":
                assert item["information"]["diastolic"] < item["information"]["systolic"]
