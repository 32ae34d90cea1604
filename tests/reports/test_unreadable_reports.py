"""A report the Reports API cannot read whole is a 503, never a 500 (SPEC §3, §7).

Two causes: a report that changes under every try of a read (the sync rewriting it as it is
paged), and a stored value that does not decode. Both are answered with a problem document
and ``Retry-After``; the second also logs one line naming whose report it is.
"""

from __future__ import annotations

import logging
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from werkzeug.test import Client, TestResponse

from healthapp.audit.stream import STREAM_KEY
from healthapp.domain.report_codec import HASH_LENGTH
from healthapp.domain.report_keys import (
    CURRENT_GENERATION_KEY,
    FIRST_PAGE_FIELD,
    META_FIELD,
    SYNC_STATS_KEY,
    chunk_field,
    user_key,
    users_index_key,
)
from healthapp.domain.roles import Role
from healthapp.reports.app import create_app
from healthapp.reports.store import CHANGED_RETRY_AFTER_SECONDS, ReportStore
from healthapp.reports.sync_metrics import render_prometheus
from healthapp.sync.passes import run_incremental_sync
from tests.assertions import assert_problem
from tests.factories import insert_checkups

#: All a line about an unreadable report may carry: whose report, which part, and what
#: every log line carries. No stored bytes, no health value.
LINE_MEMBERS = {"event", "username", "part", "request_id", "level", "logger", "timestamp"}


def bearer(user: Any, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}", **extra}


def assert_unavailable(response: TestResponse, retry_after: int | None = None) -> None:
    """A 503 problem document asking the client to come back."""
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) >= 1
    if retry_after is not None:
        assert response.headers["Retry-After"] == str(retry_after)


def unreadable_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The ``stored report unreadable`` lines logged meanwhile."""
    return [
        record.msg
        for record in caplog.records
        if record.name == "healthapp.reports"
        and isinstance(record.msg, dict)
        and record.msg.get("event") == "stored report unreadable"
    ]


def assert_one_line_naming(caplog: pytest.LogCaptureFixture, username: str | None, part: str):
    lines = unreadable_lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0]["username"] == username
    assert lines[0]["part"] == part
    assert set(lines[0]) <= LINE_MEMBERS, lines[0]
    caplog.clear()


# A report that keeps changing while it is paged ------------------------------------------


class SyncBetweenReads(redis.Redis):
    """A Redis client for the Reports API after whose read of a report's meta, before it
    reads the chunks that meta names, the sync rewrites the report (a new check-up, a real
    incremental pass on another connection): ``rewrites`` times, then it lets reads be."""

    rewrite: Any
    rewrites_left: int
    rewritten: int

    @classmethod
    def on(cls, url: str, *, rewrite: Any, rewrites: int) -> SyncBetweenReads:
        client = cls.from_url(url)
        client.rewrite, client.rewrites_left, client.rewritten = rewrite, rewrites, 0
        return client

    def hmget(self, name: Any, keys: Any, *args: Any) -> Any:
        if META_FIELD not in keys and self.rewrites_left > 0:
            self.rewrites_left -= 1
            self.rewritten += 1
            self.rewrite()
        return super().hmget(name, keys, *args)


@pytest.fixture
def paged_patient(api: Any, engine: Any, sync: Any) -> dict[str, Any]:
    """A patient with 300 check-ups, and a rewrite of their report: one more check-up, synced."""
    patient = api.user()
    machine = api.machine("heart_rate")
    insert_checkups(engine, user_id=patient.id, machine_id=machine, count=300)
    sync()
    # Older than the 150th check-up (a minute apart, the newest an hour ago): the page's
    # chunks are past the two a read fetches with the meta, so the read asks for them apart.
    before = datetime.now(UTC) - timedelta(hours=1, minutes=150)

    def rewrite() -> None:
        insert_checkups(engine, user_id=patient.id, machine_id=machine, count=1)
        sync()

    return {
        "patient": patient,
        "rewrite": rewrite,
        "path": f"/api/v1/users/{patient.username}/?limit=1&to={before:%Y-%m-%dT%H:%M:%SZ}",
    }


def _reports_on(client: redis.Redis, settings: Any) -> Any:
    return create_app(settings, redis_client=client).test_client()


def test_a_report_rewritten_under_every_try_is_a_503_with_retry_after(
    paged_patient: dict[str, Any], reports_settings: Any, redis_url: str
):
    client = SyncBetweenReads.on(redis_url, rewrite=paged_patient["rewrite"], rewrites=10)
    reports = _reports_on(client, reports_settings)

    response = reports.get(paged_patient["path"], headers=bearer(paged_patient["patient"]))

    assert_unavailable(response, retry_after=CHANGED_RETRY_AFTER_SECONDS)
    assert client.rewritten == 3  # three tries, each met a new version
    client.close()


def test_a_report_that_settles_before_the_third_try_is_read(
    paged_patient: dict[str, Any], reports_settings: Any, redis_url: str
):
    client = SyncBetweenReads.on(redis_url, rewrite=paged_patient["rewrite"], rewrites=2)
    reports = _reports_on(client, reports_settings)

    response = reports.get(paged_patient["path"], headers=bearer(paged_patient["patient"]))

    assert response.status_code == 200, response.json
    assert len(response.json["checkups"]) == 1
    assert client.rewritten == 2
    # The third try read the version the second rewrite left: 302 check-ups in it.
    assert sum(entry["count"] for entry in response.json["summary"].values()) == 302
    client.close()


# A stored value that does not decode -----------------------------------------------------


@pytest.fixture
def stored(api: Any, engine: Any, sync: Any, reports_settings: Any, redis_client: Any) -> Any:
    """A synced patient with 70 check-ups, the Reports API and the key of their report."""
    patient = api.user()
    insert_checkups(engine, user_id=patient.id, machine_id=api.machine("heart_rate"), count=70)
    sync()
    app = create_app(reports_settings)
    store: ReportStore = app.extensions["healthapp.report_store"]
    key = user_key(store.generation(), patient.username)

    class Stored:
        def __init__(self) -> None:
            self.patient, self.app, self.key = patient, app, key
            self.path = f"/api/v1/users/{patient.username}/"
            self.page = redis_client.hget(key, FIRST_PAGE_FIELD)
            self.meta = orjson.loads(redis_client.hget(key, META_FIELD))

        def write(self, field: str, value: bytes) -> None:
            redis_client.hset(key, field, value)

    return Stored()


def _header(page: bytes) -> bytes:
    return page[: page.index(b"\x00") + 1]


CORRUPT_PAGES = {
    "not a page at all": lambda page: b"\x00\x01garbage",
    "a header that is not text": lambda page: b"\xff" * HASH_LENGTH + page[HASH_LENGTH:],
    "a synced_at that is no time": lambda page: page[:HASH_LENGTH] + b"yesterday\x00" + b"x",
    "a body neither gzip nor zlib": lambda page: _header(page) + b'{"plain": "json"}',
    "a zlib body cut short": lambda page: _header(page) + zlib.compress(b"{}" * 500)[:12],
}


@pytest.mark.parametrize("corruption", list(CORRUPT_PAGES))
def test_a_corrupt_first_page_is_a_503_and_one_log_line_on_either_path(
    stored: Any, caplog: pytest.LogCaptureFixture, corruption: str
):
    reports = stored.app.test_client()
    headers = bearer(stored.patient, **{"Accept-Encoding": "identity"})
    assert reports.get(stored.path, headers=headers).status_code == 200  # the token is verified
    stored.write(FIRST_PAGE_FIELD, CORRUPT_PAGES[corruption](stored.page))

    with caplog.at_level(logging.INFO, logger="healthapp.reports"):
        served = Client(stored.app).get(stored.path, headers=headers)
        assert_unavailable(served)
        assert_one_line_naming(caplog, stored.patient.username, "first page")

        flask_only = Client(stored.app.wsgi_app.flask_app).get(stored.path, headers=headers)
        assert_unavailable(flask_only)
        assert_one_line_naming(caplog, stored.patient.username, "first page")
    assert served.get_data() == flask_only.get_data()


def test_a_gzip_page_that_does_not_inflate_is_a_503_for_a_client_without_gzip(
    stored: Any, caplog: pytest.LogCaptureFixture
):
    body = stored.page[stored.page.index(b"\x00") + 1 :]
    assert body.startswith(b"\x1f\x8b")
    stored.write(FIRST_PAGE_FIELD, _header(stored.page) + body[:20])
    reports = stored.app.test_client()

    with caplog.at_level(logging.INFO, logger="healthapp.reports"):
        for _ in range(2):  # the second takes the fast path
            plain = reports.get(stored.path, headers=bearer(stored.patient))
            assert_unavailable(plain)
            assert_one_line_naming(caplog, stored.patient.username, "first page")


def test_a_refused_first_page_is_not_audited_as_a_read(stored: Any, redis_client: Any):
    reports = stored.app.test_client()
    assert reports.get(stored.path, headers=bearer(stored.patient)).status_code == 200
    reads = redis_client.xlen(STREAM_KEY)
    stored.write(FIRST_PAGE_FIELD, _header(stored.page) + b"\x78\x9c" + b"\x00" * 8)

    response = reports.get(stored.path, headers=bearer(stored.patient, **{"Accept-Encoding": ""}))

    assert_unavailable(response)
    assert redis_client.xlen(STREAM_KEY) == reads


def _chunk(meta: dict[str, Any], payload: bytes) -> bytes:
    return meta["hash"].encode() + payload


CORRUPT_FIELDS = {
    "meta that is not JSON": (META_FIELD, lambda meta: b"{not json", "meta"),
    "meta of another shape": (
        META_FIELD,
        lambda meta: orjson.dumps({**meta, "chunks": "all of them"}),
        "meta",
    ),
    "meta whose synced_at is no time": (
        META_FIELD,
        lambda meta: orjson.dumps({**meta, "synced_at": "soon"}),
        "meta",
    ),
    "a chunk that does not inflate": (
        chunk_field(0),
        lambda meta: _chunk(meta, b"\x78\x9cnot deflate"),
        "chunk 0",
    ),
    "a chunk of another shape": (
        chunk_field(0),
        lambda meta: _chunk(meta, zlib.compress(b'[{"id": 1}]')),
        "chunk 0",
    ),
    "a chunk naming a machine the meta lacks": (
        chunk_field(0),
        lambda meta: _chunk(
            meta, zlib.compress(orjson.dumps([["id", "heart_rate", {}, 7, None, 1, "t", "t"]]))
        ),
        "chunk 0",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPT_FIELDS))
def test_a_corrupt_meta_or_chunk_is_a_503_and_one_log_line_on_every_path_reading_it(
    stored: Any, api: Any, caplog: pytest.LogCaptureFixture, corruption: str
):
    field, value, part = CORRUPT_FIELDS[corruption]
    stored.write(field, value(stored.meta))
    reports = stored.app.test_client()
    operator = api.user(Role.OPERATOR)

    with caplog.at_level(logging.INFO, logger="healthapp.reports"):
        page = reports.get(stored.path + "?limit=10", headers=bearer(stored.patient))
        assert_unavailable(page)
        assert_one_line_naming(caplog, stored.patient.username, part)

        listed = reports.get("/api/v1/users/", headers=bearer(operator))
        assert_unavailable(listed)
        assert_one_line_naming(caplog, stored.patient.username, part)


def test_a_report_key_of_another_type_is_a_503(
    stored: Any, api: Any, redis_client: Any, caplog: pytest.LogCaptureFixture
):
    redis_client.delete(stored.key)
    redis_client.set(stored.key, b"a string where a hash belongs")
    reports = stored.app.test_client()
    operator = api.user(Role.OPERATOR)

    with caplog.at_level(logging.INFO, logger="healthapp.reports"):
        for path, as_ in ((stored.path, stored.patient), (stored.path + "?limit=5", operator)):
            assert_unavailable(reports.get(path, headers=bearer(as_)))
            assert_one_line_naming(caplog, stored.patient.username, "report key")
        assert_unavailable(reports.get("/api/v1/users/", headers=bearer(operator)))
        assert_one_line_naming(caplog, stored.patient.username, "report key")


def test_a_corrupt_generation_pointer_or_users_index_is_a_503(
    stored: Any,
    api: Any,
    redis_client: Any,
    reports_settings: Any,
    caplog: pytest.LogCaptureFixture,
):
    operator = api.user(Role.OPERATOR)
    generation = int(redis_client.get(CURRENT_GENERATION_KEY))
    redis_client.zadd(users_index_key(generation), {b"\xff\xfe": 0})

    with caplog.at_level(logging.INFO, logger="healthapp.reports"):
        listed = stored.app.test_client().get("/api/v1/users/", headers=bearer(operator))
        assert_unavailable(listed)
        assert_one_line_naming(caplog, None, "users index")

        redis_client.set(CURRENT_GENERATION_KEY, b"seven")
        fresh = create_app(reports_settings).test_client()  # no pointer cached yet
        assert_unavailable(fresh.get(stored.path, headers=bearer(stored.patient)))
        assert_one_line_naming(caplog, None, "generation pointer")


def test_sync_figures_that_are_not_text_read_as_zero(stored: Any, redis_client: Any):
    redis_client.hset(SYNC_STATS_KEY, "passes_total:incremental", b"\xff\xfe")
    store: ReportStore = stored.app.extensions["healthapp.report_store"]

    text = render_prometheus(store.sync_stats())

    assert 'healthapp_sync_passes_total{kind="incremental"} 0.0' in text


def test_the_sync_pass_mends_a_corrupt_report(
    stored: Any, api: Any, engine: Any, redis_client: Any
):
    stored.write(FIRST_PAGE_FIELD, b"garbage")
    reports = stored.app.test_client()
    assert_unavailable(reports.get(stored.path, headers=bearer(stored.patient)))

    api.post(f"/api/v1/users/{stored.patient.id}/profile", stored.patient, json={"sex": "male"})
    run_incremental_sync(engine=engine, redis_client=redis_client)

    assert reports.get(stored.path, headers=bearer(stored.patient)).status_code == 200
