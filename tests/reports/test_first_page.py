"""The stored first page, and the WSGI layer that serves it (SPEC §7, §9).

What a client receives must not depend on which of the two paths answered: these tests
send each request through both and compare status, headers and body byte for byte.
"""

from __future__ import annotations

import gzip
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from flask import request_started
from werkzeug.test import Client, TestResponse

from healthapp.auth.access import Principal, VerifiedTokens
from healthapp.auth.tokens import TokenClaims, TokenType
from healthapp.domain.report_keys import FIRST_PAGE_FIELD, user_key
from healthapp.domain.report_render import FIRST_PAGE_SIZE, report_body
from healthapp.domain.roles import Role
from healthapp.json_provider import dumps_bytes
from healthapp.pagination import encode_cursor
from healthapp.reports.store import CheckupFilter
from tests.factories import insert_checkups


def add_checkups(api: Any, engine: Any, user: Any, count: int) -> None:
    """``count`` heart-rate check-ups for ``user`` (and the report change they make)."""
    machine = api.machine("heart_rate")
    insert_checkups(engine, user_id=user.id, machine_id=machine, count=count)


def bearer(user: Any, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}", **extra}


@contextmanager
def flask_requests(app: Any) -> Iterator[list[str]]:
    """The paths of the requests the Flask app itself handled meanwhile."""
    seen: list[str] = []

    def record(_sender: Any, **_extra: Any) -> None:
        from flask import request

        seen.append(request.path)

    with request_started.connected_to(record, app):
        yield seen


def both(app: Any, path: str, headers: dict[str, str]) -> tuple[TestResponse, TestResponse]:
    """The same request through the whole app (the layer first) and through Flask alone."""
    served = Client(app).get(path, headers=headers)
    flask_only = Client(app.wsgi_app.flask_app).get(path, headers=headers)
    return served, flask_only


def assert_same(served: TestResponse, flask_only: TestResponse) -> None:
    """Same status, headers and body; the two ``Date`` headers may fall either side of a
    second boundary (the requests are made one after the other), so they may differ by
    one second and no more."""
    assert served.status == flask_only.status
    served_headers, flask_headers = dict(served.headers.items()), dict(flask_only.headers.items())
    served_date = parsedate_to_datetime(served_headers.pop("Date"))
    flask_date = parsedate_to_datetime(flask_headers.pop("Date"))
    assert 0 <= (flask_date - served_date).total_seconds() <= 1, (served_date, flask_date)
    assert served_headers == flask_headers, (
        sorted(served_headers.items()),
        sorted(flask_headers.items()),
    )
    assert served.get_data() == flask_only.get_data()


@pytest.mark.parametrize("count", [0, 7, FIRST_PAGE_SIZE, FIRST_PAGE_SIZE + 1, 130])
def test_first_page_is_what_flask_answers(api, engine, sync, reports, reports_app, count):
    patient = api.user()
    add_checkups(api, engine, patient, count)
    sync()
    headers = bearer(patient, **{"X-Request-ID": "first-page-1"})
    reports.get(f"/api/v1/users/{patient.username}/", headers=headers)  # verifies the token

    with flask_requests(reports_app) as handled:
        served, flask_only = both(reports_app, f"/api/v1/users/{patient.username}/", headers)

    assert handled == [f"/api/v1/users/{patient.username}/"]  # only the Flask-only call
    assert served.status_code == 200
    assert_same(served, flask_only)
    assert len(served.json["checkups"]) == min(count, FIRST_PAGE_SIZE)
    assert (served.json["next_cursor"] is not None) == (count > FIRST_PAGE_SIZE)


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("*", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("deflate", False),
    ],
)
def test_a_client_that_accepts_gzip_gets_the_stored_bytes_on_either_path(
    api, engine, sync, reports, reports_app, accept_encoding, gzipped
):
    patient = api.user()
    add_checkups(api, engine, patient, 60)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    plain = reports.get(path, headers=bearer(patient, **{"X-Request-ID": "gz-1"}))
    headers = bearer(patient, **{"X-Request-ID": "gz-1", "Accept-Encoding": accept_encoding})

    with flask_requests(reports_app) as handled:
        served, flask_only = both(reports_app, path, headers)

    assert handled == [path]
    assert_same(served, flask_only)
    assert served.headers["Vary"] == "Accept-Encoding"
    if gzipped:
        assert served.headers["Content-Encoding"] == "gzip"
        assert served.headers["ETag"] == f"W/{plain.headers['ETag']}"
        assert gzip.decompress(served.get_data()) == plain.get_data()
        assert len(served.get_data()) < len(plain.get_data()) / 3
    else:
        assert "Content-Encoding" not in served.headers
        assert served.get_data() == plain.get_data()


def test_either_etag_revalidates_a_gzipped_page(api, engine, sync, reports, reports_app):
    patient = api.user()
    add_checkups(api, engine, patient, 20)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    plain = reports.get(path, headers=bearer(patient)).headers["ETag"]

    for etag in (plain, f"W/{plain}"):
        headers = bearer(
            patient, **{"X-Request-ID": "gz-2", "Accept-Encoding": "gzip", "If-None-Match": etag}
        )
        served, flask_only = both(reports_app, path, headers)
        assert served.status_code == 304, etag
        assert_same(served, flask_only)
        assert served.get_data() == b""


def test_a_page_stored_before_gzip_is_sent_inflated(api, engine, sync, reports, reports_app):
    patient = api.user()
    add_checkups(api, engine, patient, 20)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    before = reports.get(path, headers=bearer(patient))
    store = reports_app.extensions["healthapp.report_store"]
    stored = store.first_page(patient.username)
    key = user_key(store.generation(), patient.username)
    older = f"{stored.version}{stored.synced_at}\x00".encode() + zlib.compress(stored.body)
    store.redis.hset(key, FIRST_PAGE_FIELD, older)
    headers = bearer(patient, **{"X-Request-ID": "gz-3", "Accept-Encoding": "gzip"})

    with flask_requests(reports_app) as handled:
        served, flask_only = both(reports_app, path, headers)

    assert handled == [path]
    assert_same(served, flask_only)
    assert "Content-Encoding" not in served.headers
    assert served.headers["ETag"] == before.headers["ETag"]
    assert served.get_data() == before.get_data()


def test_stored_page_is_the_page_a_reader_builds(api, engine, sync, reports_app):
    patient = api.user()
    add_checkups(api, engine, patient, 130)
    sync()
    store = reports_app.extensions["healthapp.report_store"]

    stored = store.first_page(patient.username)
    page = store.get_report(patient.username, filters=CheckupFilter(), limit=FIRST_PAGE_SIZE)

    cursor = encode_cursor(list(page.next_key))
    assert stored.body == dumps_bytes(report_body(page.meta, page.records, cursor))
    assert stored.version == page.version
    assert stored.synced_at == page.synced_at


def test_revalidation_answers_304_on_either_path(api, engine, sync, reports, reports_app):
    patient = api.user()
    add_checkups(api, engine, patient, 60)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    first = reports.get(path, headers=bearer(patient, **{"X-Request-ID": "rv-1"}))
    etag = first.headers["ETag"]

    for condition in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        headers = bearer(patient, **{"X-Request-ID": "rv-1", "If-None-Match": condition})
        with flask_requests(reports_app) as handled:
            served, flask_only = both(reports_app, path, headers)
        assert served.status_code == 304, condition
        assert handled == [path]
        assert_same(served, flask_only)

    stale = bearer(patient, **{"X-Request-ID": "rv-1", "If-None-Match": '"stale"'})
    served, flask_only = both(reports_app, path, stale)
    assert served.status_code == 200
    assert_same(served, flask_only)


def test_a_changed_report_gets_a_new_first_page_and_etag(api, engine, sync, reports):
    patient = api.user()
    add_checkups(api, engine, patient, 5)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    before = reports.get(path, headers=bearer(patient))

    api.post(f"/api/v1/users/{patient.id}/profile", patient, json={"sex": "female"})
    sync()
    after = reports.get(path, headers=bearer(patient, **{"If-None-Match": before.headers["ETag"]}))

    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.json["profile"]["sex"] == "female"


@pytest.mark.parametrize(
    "variant",
    ["another user's report", "query", "origin", "unknown token", "no report", "post"],
)
def test_anything_unusual_is_left_to_flask(api, engine, sync, reports, reports_app, variant):
    patient, other = api.user(), api.user()
    add_checkups(api, engine, patient, 3)
    add_checkups(api, engine, other, 3)
    sync()
    reports.get(f"/api/v1/users/{patient.username}/", headers=bearer(patient))
    path, headers, method = f"/api/v1/users/{patient.username}/", bearer(patient), "GET"
    if variant == "another user's report":
        path = f"/api/v1/users/{other.username}/"
    elif variant == "query":
        path += "?limit=2"
    elif variant == "origin":
        headers["Origin"] = "https://app.example"
    elif variant == "unknown token":
        headers = bearer(api.user(Role.OPERATOR))  # a token this process has not seen
    elif variant == "no report":
        path = "/api/v1/users/nobody-here/"
        headers = bearer(api.user(Role.ADMIN))
        reports.get(path, headers=headers)
    elif variant == "post":
        method = "POST"

    with flask_requests(reports_app) as handled:
        response = reports.open(path, method=method, headers=headers)

    assert handled == [path.partition("?")[0]]
    expected = {
        "another user's report": 404,
        "query": 200,
        "origin": 200,
        "unknown token": 200,
        "no report": 404,
        "post": 405,
    }[variant]
    assert response.status_code == expected


def test_a_forged_token_is_never_admitted(api, engine, sync, reports):
    patient = api.user()
    add_checkups(api, engine, patient, 3)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    assert reports.get(path, headers=bearer(patient)).status_code == 200
    header, payload, signature = patient.access_token.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"

    response = reports.get(path, headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_the_metrics_count_requests_either_path_answered(api, engine, sync, reports, scrape):
    patient = api.user()
    add_checkups(api, engine, patient, 3)
    sync()
    path = f"/api/v1/users/{patient.username}/"

    def count() -> float:
        text = scrape()
        return sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("healthapp_http_requests_total{")
            and 'route="/api/v1/users/<username>/"' in line
            and 'status="200"' in line
            and 'api="reports"' in line
        )

    before = count()
    for _ in range(3):
        assert reports.get(path, headers=bearer(patient)).status_code == 200
    assert count() - before == 3


def claims(expires_at: float) -> TokenClaims:
    return TokenClaims(
        principal=Principal(id=uuid.uuid4(), username="someone", role=Role.PATIENT),
        token_type=TokenType.ACCESS,
        family=uuid.uuid4(),
        token_id=uuid.uuid4().hex,
        issued_at=time.time(),
        expires_at=expires_at,
    )


def test_verified_tokens_forget_a_token_once_it_expires():
    tokens = VerifiedTokens()
    tokens.put("fresh", claims(time.time() + 60))
    tokens.put("expired", claims(time.time() - 1))

    assert tokens.get("fresh", "access") is not None
    assert tokens.get("fresh", "refresh") is None
    assert tokens.get("expired", "access") is None


def test_verified_tokens_keep_at_most_their_capacity():
    tokens = VerifiedTokens(capacity=3)
    for n in range(5):
        tokens.put(f"t{n}", claims(time.time() + 60))

    assert [tokens.get(f"t{n}", "access") is not None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_either_path_hands_the_read_to_the_audit_stream(api, engine, sync, reports, redis_client):
    from healthapp.audit.stream import STREAM_KEY

    patient = api.user()
    add_checkups(api, engine, patient, 3)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    first = reports.get(path, headers=bearer(patient, **{"X-Request-ID": "audit-flask"}))
    second = reports.get(path, headers=bearer(patient, **{"X-Request-ID": "audit-fast"}))
    reports.get(path, headers=bearer(patient, **{"If-None-Match": second.headers["ETag"]}))

    entries = redis_client.xrange(STREAM_KEY)
    assert first.status_code == second.status_code == 200
    assert [fields[b"request_id"] for _, fields in entries] == [b"audit-flask", b"audit-fast"]
    flask_event, fast_event = ({k: v for k, v in f.items() if k != b"at"} for _, f in entries)
    assert fast_event == {**flask_event, b"request_id": b"audit-fast"}
    assert fast_event[b"subjects"] == patient.username.encode()
    assert fast_event[b"actor_id"] == str(patient.id).encode()


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_matched_in_any_case_on_either_path(
    api, engine, sync, reports, reports_app, scheme
):
    patient = api.user()
    add_checkups(api, engine, patient, 3)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    headers = {"Authorization": f"{scheme} {patient.access_token}", "X-Request-ID": "case-1"}

    with flask_requests(reports_app) as handled:
        first = reports.get(path, headers=headers)  # a token not yet seen: Flask verifies it
        served, flask_only = both(reports_app, path, headers)

    assert first.status_code == 200, first.json
    assert handled == [path, path]  # the first read and the Flask-only call
    assert_same(served, flask_only)
    assert served.get_data() == first.get_data()


@pytest.mark.parametrize(
    "condition",
    [
        "{etag}",
        "{bare}",  # unquoted: invalid, yet Flask (Werkzeug) reads it as that tag
        'W/"{bare}"',
        '"other" ,  {etag}',
        '"a", "b"',
        "W/{etag}, *",
        "",
        ",,",
        '"unterminated',
    ],
)
def test_if_none_match_is_read_alike_on_either_path(
    api, engine, sync, reports, reports_app, condition
):
    patient = api.user()
    add_checkups(api, engine, patient, 5)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    etag = reports.get(path, headers=bearer(patient)).headers["ETag"]
    value = condition.format(etag=etag, bare=etag.strip('"'))
    headers = bearer(patient, **{"X-Request-ID": "inm-1", "If-None-Match": value})

    with flask_requests(reports_app) as handled:
        served, flask_only = both(reports_app, path, headers)

    assert handled == [path]
    assert_same(served, flask_only)


def test_an_over_long_header_is_the_same_431_on_either_path(
    api, engine, sync, reports, reports_app
):
    patient = api.user()
    add_checkups(api, engine, patient, 3)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    reports.get(path, headers=bearer(patient))
    headers = bearer(patient, **{"X-Request-ID": "long-1", "X-Padding": "a" * 9000})

    with flask_requests(reports_app) as handled:
        served, flask_only = both(reports_app, path, headers)

    assert handled == [path, path]  # the layer leaves it to Flask
    assert served.status_code == 431
    assert served.mimetype == "application/problem+json"
    assert dict(served.headers.items()) == dict(flask_only.headers.items())
    assert served.get_data() == flask_only.get_data()


def test_a_head_of_a_report_records_no_read_on_either_path(
    api, engine, sync, reports, reports_app, redis_client
):
    from healthapp.audit.stream import STREAM_KEY

    patient, operator = api.user(), api.user(Role.OPERATOR)
    add_checkups(api, engine, patient, 3)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    headers = bearer(patient, **{"X-Request-ID": "head-1"})
    got = reports.get(path, headers=headers)  # verifies the token and records one read
    assert [f[b"request_id"] for _, f in redis_client.xrange(STREAM_KEY)] == [b"head-1"]

    served = Client(reports_app).head(path, headers={**headers, "X-Request-ID": "head-2"})
    flask_only = Client(reports_app.wsgi_app.flask_app).head(
        path, headers={**headers, "X-Request-ID": "head-2"}
    )
    listed = reports.head("/api/v1/users/", headers=bearer(operator))

    assert served.status_code == flask_only.status_code == listed.status_code == 200
    assert_same(served, flask_only)
    assert served.get_data() == b""
    assert served.headers["Content-Length"] == str(len(got.get_data()))
    assert served.headers["Content-Type"] == "application/json"
    assert served.headers["ETag"] == got.headers["ETag"]
    entries = redis_client.xrange(STREAM_KEY)
    assert [f[b"request_id"] for _, f in entries] == [b"head-1"]  # no read for any HEAD

    reports.get(path, headers=bearer(patient, **{"X-Request-ID": "head-3"}))
    reports.get("/api/v1/users/", headers=bearer(operator, **{"X-Request-ID": "head-4"}))
    entries = redis_client.xrange(STREAM_KEY)
    assert [f[b"request_id"] for _, f in entries] == [b"head-1", b"head-3", b"head-4"]


def test_the_fast_path_checks_revocation_with_one_command_in_the_pages_round_trip(
    api, engine, sync, reports, reports_app, redis_client
):
    patient = api.user()
    add_checkups(api, engine, patient, 3)
    sync()
    path = f"/api/v1/users/{patient.username}/"
    with flask_requests(reports_app) as through_flask:
        assert reports.get(path, headers=bearer(patient)).status_code == 200  # verified
        redis_client.config_resetstat()
        for _ in range(10):
            assert reports.get(path, headers=bearer(patient)).status_code == 200
    assert len(through_flask) == 1  # the ten were answered by the fast path
    stats = redis_client.info("commandstats")
    calls = {
        name: entry["calls"]
        for name, entry in stats.items()
        if not name.startswith("cmdstat_config")  # the reset itself (Redis 7: config|resetstat)
    }
    # Per request: the page with its owner, the revocation check, and the read's audit event.
    assert calls == {"cmdstat_hmget": 20, "cmdstat_xadd": 10}
