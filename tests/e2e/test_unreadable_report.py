"""A corrupt stored first page through gunicorn: the problem document and the log line, not
gunicorn's bare 500 (the fast path runs in front of Flask's error handlers)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthapp.domain.report_keys import CURRENT_GENERATION_KEY, FIRST_PAGE_FIELD, user_key
from healthapp.problems import PROBLEM_MEDIA_TYPE
from tests.factories import insert_checkups
from tests.processes import REPORTS_APP, running_gunicorn

pytestmark = pytest.mark.slow


def _unreadable_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"stored report unreadable"' in line:
            lines.append(json.loads(line))
    return lines


def test_a_corrupt_first_page_is_a_503_problem_and_a_log_line_under_gunicorn(
    api: Any, engine: Any, sync: Any, redis_url: str, redis_client: Any, tmp_path: Path
):
    patient = api.user()
    insert_checkups(engine, user_id=patient.id, machine_id=api.machine("heart_rate"), count=20)
    sync()
    key = user_key(int(redis_client.get(CURRENT_GENERATION_KEY)), patient.username)
    page = redis_client.hget(key, FIRST_PAGE_FIELD)
    header = page[: page.index(b"\x00") + 1]
    corruptions = {
        "no header": b"garbage",
        "a zlib body cut short": header + zlib.compress(b"{}" * 500)[:12],
    }
    log = tmp_path / "reports.log"
    answers = []
    with (
        running_gunicorn(None, log, app=REPORTS_APP, REDIS_URL=redis_url, LOG_JSON="1") as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        url = f"/api/v1/users/{patient.username}/"
        assert http.get(url, headers=patient.headers).status_code == 200  # token now verified
        for corrupt in corruptions.values():
            redis_client.hset(key, FIRST_PAGE_FIELD, corrupt)
            for encoding in ("identity", "gzip"):
                answers.append(
                    http.get(url, headers={**patient.headers, "Accept-Encoding": encoding})
                )

    for response in answers:
        assert response.status_code == 503, response.text
        assert response.headers["Content-Type"] == PROBLEM_MEDIA_TYPE, response.text
        assert response.json()["status"] == 503
        assert int(response.headers["Retry-After"]) >= 1
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    lines = _unreadable_lines(log)
    assert len(lines) == len(answers), text[-3000:]
    assert {line["username"] for line in lines} == {patient.username}
    assert {line["part"] for line in lines} == {"first page"}
