"""End to end through clients generated from the APIs' own ``/openapi.json``.

A mobile team generates its client with ``openapi-python-client``; this does the same
against real servers (gunicorn on the suite's PostgreSQL and Redis), with warnings as
errors, and drives register -> token -> profile -> upload -> report -> 304 through the
generated code only (the machine is set up by an admin beforehand).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.factories import ApiClient
from tests.processes import running_apis
from tests.reports.conftest import sync

__all__ = ["sync"]

pytestmark = pytest.mark.slow

#: No formatting hook: the generated code is imported, not read.
GENERATOR_CONFIG = "post_hooks: []\n"


@pytest.fixture(scope="module")
def generator() -> None:
    pytest.importorskip(
        "openapi_python_client",
        reason="openapi-python-client is not installed (it is in the dev extra)",
    )


def generate_client(spec_url: str, package: str, folder: Path) -> ModuleType:
    """Generate a client package from ``spec_url`` into ``folder`` and import it."""
    config = folder / "openapi-python-client.yaml"
    config.write_text(GENERATOR_CONFIG)
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--url", spec_url]
    command += ["--meta", "none", "--output-path", str(folder / package)]
    command += ["--config", str(config), "--fail-on-warning"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return importlib.import_module(package)


@contextmanager
def importable(folder: Path, *packages: str) -> Iterator[None]:
    """``folder`` on ``sys.path``; the packages forgotten afterwards."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in list(sys.modules):
            if name.split(".")[0] in packages:
                del sys.modules[name]


def module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_generated_clients_drive_a_patient_from_registration_to_a_cached_report(
    generator: None,
    api: ApiClient,
    database_url: str,
    redis_url: str,
    redis_client: Any,
    sync: Any,
    tmp_path: Path,
) -> None:
    machine_id = api.machine()
    with (
        running_apis(database_url, redis_url, tmp_path) as (core_url, reports_url),
        importable(tmp_path, "core_client", "reports_client"),
    ):
        core = generate_client(f"{core_url}/openapi.json", "core_client", tmp_path)
        reports = generate_client(f"{reports_url}/openapi.json", "reports_client", tmp_path)
        users = "api.users"
        models = module(core, "models")

        anonymous = core.Client(base_url=core_url, raise_on_unexpected_status=True)
        username = f"Gen-{uuid.uuid4().hex[:8]}"
        registered = module(core, f"{users}.create_user").sync(
            client=anonymous,
            body=models.UserCreate(
                username=username, email=f"{username}@example.com", password="a long passphrase"
            ),
        )
        assert isinstance(registered, models.UserRead)
        assert registered.username == username.lower()
        assert registered.role == models.Role.PATIENT

        tokens = module(core, "api.authentication.create_token").sync(
            client=anonymous,
            body=models.TokenCreate(username=username, password="a long passphrase"),
        )
        assert isinstance(tokens, models.TokenRead)
        patient = core.AuthenticatedClient(
            base_url=core_url, token=tokens.access_token, raise_on_unexpected_status=True
        )
        me = module(core, f"{users}.get_user").sync(client=patient, user_id=registered.id)
        assert isinstance(me, models.UserRead)
        assert me.id == registered.id

        profile = module(core, f"{users}.create_profile").sync(
            client=patient,
            user_id=registered.id,
            body=models.ProfileCreate(blood_group=models.BloodGroup.A_POSITIVE),
        )
        assert isinstance(profile, models.ProfileRead)
        assert profile.blood_group == models.BloodGroup.A_POSITIVE

        checkup_id = uuid.uuid4()
        item = models.BloodPressureCheckupCreate(
            checkup_type="blood_pressure",
            id=checkup_id,
            user_id=registered.id,
            machine_id=machine_id,
            information=models.BloodPressure(systolic=121, diastolic=79),
            taken_at=datetime.now(UTC) - timedelta(hours=1),
        )
        upload = module(core, "api.check_ups.upload_checkups")
        body = models.CheckupBulkCreate(checkups=[item])
        stored = upload.sync_detailed(client=patient, body=body)
        assert stored.status_code == 201
        assert isinstance(stored.parsed, models.CheckupUploadRead)
        assert (stored.parsed.created, stored.parsed.duplicates) == (1, 0)
        again = upload.sync_detailed(client=patient, body=body)
        assert again.status_code == 200
        assert isinstance(again.parsed, models.CheckupUploadRead)  # the 200 has its schema
        assert again.parsed.duplicates == 1
        read = module(core, "api.check_ups.get_checkup").sync(client=patient, checkup_id=checkup_id)
        assert isinstance(read, models.CheckupRead)

        sync()  # a report exists once the sync has written it

        reader = reports.AuthenticatedClient(
            base_url=reports_url, token=tokens.access_token, raise_on_unexpected_status=True
        )
        get_report = module(reports, "api.reports.get_report")
        report = get_report.sync_detailed(client=reader, username=registered.username)
        assert report.status_code == 200
        report_models = module(reports, "models")
        assert isinstance(report.parsed, report_models.ReportRead)
        assert [c.id for c in report.parsed.checkups] == [checkup_id]
        assert report.parsed.profile.blood_group == report_models.BloodGroup.A_POSITIVE
        etag = report.headers["ETag"]

        unchanged = get_report.sync_detailed(
            client=reader, username=registered.username, if_none_match=etag
        )
        assert unchanged.status_code == 304
        assert unchanged.parsed is None
        assert unchanged.headers["ETag"] == etag
