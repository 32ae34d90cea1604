"""``healthapp sync``, ``--full`` and ``--verify`` on the test database and Redis."""

from __future__ import annotations

from click.testing import CliRunner

from healthapp.cli import main
from tests.factories import insert_checkups


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
