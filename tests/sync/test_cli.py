"""``healthapp sync``, ``--full`` and ``--verify`` on the test database and Redis."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from healthapp.cli import main
from tests.factories import insert_checkups
from tests.processes import free_port


def test_sync_full_and_verify(api, engine, database_url, redis_url, redis_client):
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    user = api.user()
    machine = api.machine()
    insert_checkups(engine, user_id=user.id, machine_id=machine, count=3)

    result = runner.invoke(main, ["sync"], env=env)
    assert result.exit_code == 0, result.output
    assert "incremental sync:" in result.output
    assert runner.invoke(main, ["sync", "--verify"], env=env).exit_code == 0

    insert_checkups(engine, user_id=user.id, machine_id=machine, count=1)
    stale = runner.invoke(main, ["sync", "--verify"], env=env)
    assert stale.exit_code == 1
    assert f"stale: {user.username}" in stale.output

    full = runner.invoke(main, ["sync", "--full", "--batch-size", "1"], env=env)
    assert full.exit_code == 0, full.output
    assert "full rebuild into generation" in full.output
    clean = runner.invoke(main, ["sync", "--verify"], env=env)
    assert clean.exit_code == 0, clean.output
    assert "0 missing, 0 stale, 0 orphaned" in clean.output


def test_help_names_every_mode():
    result = CliRunner().invoke(main, ["sync", "--help"])
    assert result.exit_code == 0
    for option in ("--full", "--verify", "--batch-size"):
        assert option in result.output
    run_help = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--reports-port" in run_help


@pytest.mark.parametrize("down", ["postgresql", "redis"])
def test_a_store_that_is_down_gets_one_line_not_a_traceback(database_url, redis_url, down):
    closed = free_port()  # nothing listens there
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/x"
        if down == "postgresql"
        else database_url,
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0" if down == "redis" else redis_url,
        "STORE_TIMEOUT_SECONDS": "1",
    }

    result = CliRunner().invoke(main, ["sync"], env=env)

    assert result.exit_code == 1
    assert "a store is unreachable" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
