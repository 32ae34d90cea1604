"""The keys that sign and verify tokens (SPEC §14): per-instance development keys, rotation,
the command that makes a key pair."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from healthapp import config
from healthapp.app import create_app as create_core_app
from healthapp.auth.keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    development_key_pair,
    generate_key_pair,
    load_public_keys,
    signing_keys,
    thumbprint,
    verifying_keys,
)
from healthapp.cli import main
from healthapp.domain.roles import Role
from healthapp.reports.app import create_app as create_reports_app
from tests.factories import ApiClient

OLD_PRIVATE, OLD_PUBLIC = generate_key_pair()
NEW_PRIVATE, NEW_PUBLIC = generate_key_pair()


def _kid(public_pem: str) -> str:
    return thumbprint(load_public_keys(public_pem)[0])


def test_each_instance_makes_its_own_key_pair(tmp_path: Path) -> None:
    first = development_key_pair(tmp_path / "one")
    second = development_key_pair(tmp_path / "two")
    assert first[0].read_text() != second[0].read_text()
    assert stat.S_IMODE(first[0].stat().st_mode) == 0o600  # the private key: owner only
    assert development_key_pair(tmp_path / "one") == first
    assert first[0].read_text() == (tmp_path / "one" / PRIVATE_KEY_FILE).read_text()


def test_the_reports_api_reads_only_the_public_key(tmp_path: Path) -> None:
    settings = config.Testing(HEALTHAPP_INSTANCE_PATH=str(tmp_path))
    core_keys = signing_keys(settings)
    (tmp_path / PRIVATE_KEY_FILE).unlink()  # the read side needs no private key
    reports_keys = verifying_keys(settings)
    assert reports_keys.signing is None
    assert set(reports_keys.verifying) == {core_keys.signing_kid}
    assert (tmp_path / PUBLIC_KEY_FILE).exists()


def _core(database_url: str, engine: Engine, **values: Any) -> ApiClient:
    settings = config.Testing()
    settings.DATABASE_URL = database_url
    for name, value in values.items():
        setattr(settings, name, value)
    app = create_core_app(settings, engine=engine)
    return ApiClient(app, app.test_client())


def _reports(redis_url: str, public_keys: str) -> Any:
    settings = config.Testing()
    settings.REDIS_URL = redis_url
    settings.JWT_PUBLIC_KEYS = public_keys
    return create_reports_app(settings).test_client()


def test_a_rotation_signs_with_the_new_key_and_verifies_the_old_tokens(
    database_url: str, engine: Engine, redis_url: str, redis_client: Any
) -> None:
    before = _core(database_url, engine, JWT_PRIVATE_KEY=OLD_PRIVATE)
    user = before.user(Role.OPERATOR)
    old_token = {"Authorization": f"Bearer {user.access_token}"}
    assert pyjwt.get_unverified_header(user.access_token)["kid"] == _kid(OLD_PUBLIC)

    # The new key signs; the old public key stays until the old tokens have expired.
    after = _core(database_url, engine, JWT_PRIVATE_KEY=NEW_PRIVATE, JWT_PUBLIC_KEYS=OLD_PUBLIC)
    assert after.get("/api/v1/users/", headers=old_token).status_code == 200
    jwks = after.get("/.well-known/jwks.json").json
    assert [key["kid"] for key in jwks["keys"]] == [_kid(NEW_PUBLIC), _kid(OLD_PUBLIC)]
    login = after.post(
        "/api/v1/auth/token", json={"username": user.username, "password": "correct-horse-battery"}
    ).json
    new_token = {"Authorization": f"Bearer {login['access_token']}"}
    assert pyjwt.get_unverified_header(login["access_token"])["kid"] == _kid(NEW_PUBLIC)

    both = _reports(redis_url, OLD_PUBLIC + NEW_PUBLIC)
    assert both.get("/api/v1/users/", headers=old_token).status_code == 200
    assert both.get("/api/v1/users/", headers=new_token).status_code == 200
    # Once the old key is retired, its tokens are refused: their kid is unknown.
    only_new = _reports(redis_url, NEW_PUBLIC)
    assert only_new.get("/api/v1/users/", headers=old_token).status_code == 401
    assert only_new.get("/api/v1/users/", headers=new_token).status_code == 200


def test_keygen_writes_a_pair_the_apps_accept(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    private = (tmp_path / "keys" / PRIVATE_KEY_FILE).read_text()
    public = (tmp_path / "keys" / PUBLIC_KEY_FILE).read_text()
    assert stat.S_IMODE((tmp_path / "keys" / PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in result.output
    assert _kid(public) in result.output
    settings = config.Testing(JWT_PRIVATE_KEY=private)
    assert signing_keys(settings).signing_kid == _kid(public)
    again = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "keys")])
    assert again.exit_code != 0  # never overwrites a key


@pytest.mark.parametrize("pem", ["", "garbage", OLD_PRIVATE])
def test_public_keys_must_be_public_pem_blocks(pem: str) -> None:
    from healthapp.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="JWT_PUBLIC_KEYS"):
        load_public_keys(pem)
