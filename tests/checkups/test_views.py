"""Integration tests of the check-ups HTTP API on real PostgreSQL (SPEC §3, §6, §8)."""

from __future__ import annotations

import gc
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from sqlalchemy import Engine, text

from healthapp.auth.access import ALL_ROLES
from healthapp.domain.roles import Role
from tests.assertions import assert_problem
from tests.factories import ApiClient, checkup_item, checkup_session

if TYPE_CHECKING:
    from tests.factories import TestUser

URL = "/api/v1/checkups/"


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def stored(engine: Engine) -> int:
    return count(engine, "SELECT count(*) FROM checkups")


def outbox(engine: Engine) -> list[uuid.UUID]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT user_id FROM report_outbox ORDER BY id")))


def upload(api: ApiClient, as_: TestUser, items: list[dict[str, Any]], **kw: Any) -> Any:
    path = URL + ("?mode=batch" if kw.pop("batch", False) else "")
    return api.post(path, as_=as_, json={"checkups": items}, **kw)


@pytest.fixture
def operator(api: ApiClient) -> TestUser:
    return api.user(Role.OPERATOR)


@pytest.fixture
def patient(api: ApiClient) -> TestUser:
    return api.user(Role.PATIENT)


@pytest.fixture
def machine(api: ApiClient) -> uuid.UUID:
    return api.machine()


# Upload: the happy path and idempotent retries ---------------------------------------


def test_a_session_is_stored_and_reads_back(api, engine, operator, patient, machine):
    items = checkup_session(patient.id, machine, 8)
    response = upload(api, operator, items)
    assert response.status_code == 201, response.json
    assert response.json == {"created": 8, "duplicates": 0}

    one = api.get(URL + items[0]["id"], as_=patient)
    assert one.status_code == 200
    body = one.json
    assert body["id"] == items[0]["id"]
    assert body["user_id"] == str(patient.id)
    assert body["machine_id"] == str(machine)
    assert body["checkup_type"] == items[0]["checkup_type"]
    assert body["information"] == items[0]["information"]
    assert body["test_taken_by"] == "nurse on duty"
    assert body["taken_at"] == items[0]["taken_at"]
    assert body["uploaded_by"] == str(operator.id)
    assert body["created_at"].endswith("Z")


def test_ten_thousand_items_upload_in_one_request_and_a_retry_stores_nothing(
    api, engine, operator, patient, machine
):
    items = checkup_session(patient.id, machine, 10_000)
    first = upload(api, operator, items)
    assert first.status_code == 201, first.json
    assert first.json == {"created": 10_000, "duplicates": 0}
    assert stored(engine) == 10_000
    queued = len(outbox(engine))

    again = upload(api, operator, items)
    assert again.status_code == 200, again.json
    assert again.json == {"created": 0, "duplicates": 10_000}
    assert stored(engine) == 10_000
    assert len(outbox(engine)) == queued  # nothing new, no report to rebuild


def test_a_retry_with_new_items_stores_only_the_new_ones(api, engine, operator, patient, machine):
    items = checkup_session(patient.id, machine, 10)
    assert upload(api, operator, items[:6]).json == {"created": 6, "duplicates": 0}
    response = upload(api, operator, items)
    assert response.status_code == 201
    assert response.json == {"created": 4, "duplicates": 6}
    assert stored(engine) == 10


def test_a_retry_by_another_operator_is_still_a_duplicate(api, engine, operator, patient, machine):
    items = checkup_session(patient.id, machine, 3)
    upload(api, operator, items)
    response = upload(api, api.user(Role.ADMIN), items)
    assert response.json == {"created": 0, "duplicates": 3}
    one = api.get(URL + items[0]["id"], as_=operator).json
    assert one["uploaded_by"] == str(operator.id)  # the first upload's record is kept


def test_the_same_instant_in_another_offset_is_the_same_content(api, operator, patient, machine):
    item = checkup_item(patient.id, machine, taken_at="2026-01-15T09:30:00Z")
    upload(api, operator, [item])
    shifted = {**item, "taken_at": "2026-01-15T11:30:00+02:00"}
    assert upload(api, operator, [shifted]).json == {"created": 0, "duplicates": 1}


def test_an_item_twice_in_one_upload_is_stored_once(api, engine, operator, patient, machine):
    item = checkup_item(patient.id, machine)
    response = upload(api, operator, [item, dict(item)])
    assert response.status_code == 201
    assert response.json == {"created": 1, "duplicates": 1}
    assert stored(engine) == 1


def test_the_cycle_collector_is_back_on_after_every_upload(api, operator, patient, machine):
    items = checkup_session(patient.id, machine, 3)
    assert upload(api, operator, items).status_code == 201
    assert gc.isenabled()
    assert upload(api, operator, [{**items[0], "taken_at": "soon"}]).status_code == 422
    assert gc.isenabled()


def test_an_empty_upload_stores_nothing(api, engine, operator):
    response = upload(api, operator, [])
    assert response.status_code == 200
    assert response.json == {"created": 0, "duplicates": 0}


# Upload: all or nothing --------------------------------------------------------------


def test_one_bad_reading_rejects_the_whole_session_with_its_index(
    api, engine, operator, patient, machine
):
    items = checkup_session(patient.id, machine, 50)
    items[17] = checkup_item(patient.id, machine, "heart_rate", information={"bpm": 900})
    queued = outbox(engine)
    response = upload(api, operator, items)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["status"] == 422
    assert [e["loc"] for e in problem["errors"]] == [["checkups", 17, "information", "bpm"]]
    assert stored(engine) == 0
    assert outbox(engine) == queued


def test_every_bad_item_is_reported_in_order(api, engine, operator, patient, machine):
    items = checkup_session(patient.id, machine, 6)
    items[4]["taken_at"] = "2026-01-15T09:30:00"
    items[1]["information"] = {"systolic": "120", "diastolic": 80}
    items[1]["checkup_type"] = "blood_pressure"
    items[2]["machine_id"] = str(uuid.uuid4())
    response = upload(api, operator, items)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json["errors"]] == [
        ["checkups", 1, "information", "systolic"],
        ["checkups", 2, "machine_id"],
        ["checkups", 4, "taken_at"],
    ]
    assert stored(engine) == 0


def test_an_unknown_user_or_machine_is_an_invalid_item(api, engine, operator, patient, machine):
    items = [
        checkup_item(patient.id, machine),
        checkup_item(uuid.uuid4(), machine),
        checkup_item(patient.id, uuid.uuid4()),
    ]
    response = upload(api, operator, items)
    assert response.status_code == 422
    assert [(e["loc"], e["msg"]) for e in response.json["errors"]] == [
        (["checkups", 1, "user_id"], "no user has this id"),
        (["checkups", 2, "machine_id"], "no machine has this id"),
    ]
    assert stored(engine) == 0


def _retire(api: ApiClient, machine: uuid.UUID) -> None:
    admin = api.user(Role.ADMIN)
    response = api.patch(f"/api/v1/machines/{machine}", admin, json={"active": False})
    assert response.status_code == 200
    assert response.json["active"] is False


def test_a_retired_machine_takes_no_new_checkups(api, engine, operator, patient, machine):
    in_service = api.machine()
    _retire(api, machine)
    queued = outbox(engine)
    items = [
        checkup_item(patient.id, in_service),
        checkup_item(patient.id, machine),
        checkup_item(patient.id, in_service),
    ]
    response = upload(api, operator, items)
    problem = assert_problem(response, 422)
    assert problem["detail"] == "1 of 3 check-ups are invalid; nothing was stored."
    assert problem["errors"] == [
        {
            "loc": ["checkups", 1, "machine_id"],
            "msg": "this machine is retired and takes no new check-ups",
            "type": "retired_machine",
        }
    ]
    assert stored(engine) == 0
    assert outbox(engine) == queued


def test_batch_mode_rejects_only_the_items_of_a_retired_machine(
    api, engine, operator, patient, machine
):
    in_service = api.machine()
    before_retiring = checkup_item(patient.id, machine)
    assert upload(api, operator, [before_retiring]).status_code == 201
    _retire(api, machine)
    items = [checkup_item(patient.id, in_service), checkup_item(patient.id, machine)]
    response = upload(api, operator, items, batch=True)
    assert response.status_code == 201
    assert response.json["created"] == 1
    assert response.json["rejected"] == 1
    assert [(e["loc"], e["type"]) for e in response.json["errors"]] == [
        (["checkups", 1, "machine_id"], "retired_machine")
    ]
    assert stored(engine) == 2  # the one taken before it was retired, and the new good one
    # Put back in service, it takes check-ups again.
    admin = api.user(Role.ADMIN)
    assert api.patch(f"/api/v1/machines/{machine}", admin, json={"active": True}).status_code == 200
    again = upload(api, operator, items, batch=True)
    assert again.json == {"created": 1, "duplicates": 1, "rejected": 0, "errors": []}


def test_an_id_stored_with_other_content_is_a_conflict_and_nothing_lands(
    api, engine, operator, patient, machine
):
    items = checkup_session(patient.id, machine, 5)
    upload(api, operator, items[:2])
    queued = outbox(engine)
    changed = [*items, {**items[1], "test_taken_by": "someone else"}]
    changed[0] = {**items[0], "information": {"systolic": 140, "diastolic": 90}}
    response = upload(api, operator, changed)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert [e["loc"] for e in response.json["errors"]] == [
        ["checkups", 0, "id"],
        ["checkups", 5, "id"],
    ]
    assert "0, 5" in response.json["detail"]
    assert stored(engine) == 2  # the three new items were not stored either
    assert outbox(engine) == queued


def test_one_id_twice_with_different_content_is_a_conflict(api, engine, operator, patient, machine):
    item = checkup_item(patient.id, machine)
    other = {**item, "taken_at": "2026-01-14T09:30:00Z"}
    response = upload(api, operator, [item, other])
    assert response.status_code == 409
    assert [e["loc"] for e in response.json["errors"]] == [["checkups", 1, "id"]]
    assert stored(engine) == 0


# Upload: batch mode ------------------------------------------------------------------


def test_batch_mode_stores_the_good_readings_and_reports_the_bad(
    api, engine, operator, patient, machine
):
    items = checkup_session(patient.id, machine, 20)
    items[3]["information"] = {"bpm": 10}
    items[3]["checkup_type"] = "heart_rate"
    items[9]["user_id"] = str(uuid.uuid4())
    response = upload(api, operator, items, batch=True)
    assert response.status_code == 201
    body = response.json
    assert body["created"] == 18
    assert body["duplicates"] == 0
    assert body["rejected"] == 2
    assert [e["loc"] for e in body["errors"]] == [
        ["checkups", 3, "information", "bpm"],
        ["checkups", 9, "user_id"],
    ]
    assert stored(engine) == 18

    fixed = upload(api, operator, items[3:4] + items[9:10], batch=True)
    assert fixed.json["rejected"] == 2  # still wrong: nothing else changes
    items[3]["information"] = {"bpm": 70}
    items[9]["user_id"] = str(patient.id)
    again = upload(api, operator, items, batch=True)
    assert again.status_code == 201
    assert again.json == {"created": 2, "duplicates": 18, "rejected": 0, "errors": []}


def test_batch_mode_reports_conflicts_and_stores_the_rest(api, engine, operator, patient, machine):
    items = checkup_session(patient.id, machine, 4)
    upload(api, operator, items[:1])
    items[0] = {**items[0], "test_taken_by": "someone else"}
    response = upload(api, operator, items, batch=True)
    assert response.status_code == 201
    assert response.json["created"] == 3
    assert response.json["rejected"] == 1
    assert response.json["errors"][0]["loc"] == ["checkups", 0, "id"]
    assert stored(engine) == 4


def test_batch_mode_with_nothing_valid_answers_200(api, engine, operator, patient, machine):
    items = [checkup_item(patient.id, machine, taken_at="soon") for _ in range(3)]
    response = upload(api, operator, items, batch=True)
    assert response.status_code == 200
    assert response.json["created"] == 0
    assert response.json["rejected"] == 3
    assert stored(engine) == 0


# A string holding U+0000: PostgreSQL stores it in no text or JSONB column.
NUL_FIELDS = {
    "test_taken_by": ({"test_taken_by": "nurse\x00"}, ["test_taken_by"]),
    "notes": (
        {"information": {"systolic": 120, "diastolic": 80, "notes": "a\x00b"}},
        ["information", "notes"],
    ),
    "ecg notes": (
        {
            "checkup_type": "ecg",
            "information": {"rhythm": "sinus", "heart_rate": 60, "notes": "\x00"},
        },
        ["information", "notes"],
    ),
}


@pytest.mark.parametrize(("fields", "loc"), NUL_FIELDS.values(), ids=NUL_FIELDS.keys())
def test_a_nul_character_in_an_item_is_a_422_and_nothing_lands(
    api, engine, operator, patient, machine, fields, loc
):
    items = checkup_session(patient.id, machine, 3)
    items[1] = checkup_item(patient.id, machine, **fields)
    problem = assert_problem(upload(api, operator, items), 422)
    assert problem["errors"] == [
        {
            "loc": ["checkups", 1, *loc],
            "msg": "must not contain the NUL character",
            "type": "string_nul",
        }
    ]
    assert stored(engine) == 0


def test_batch_mode_rejects_only_the_item_with_a_nul_character(
    api, engine, operator, patient, machine
):
    items = checkup_session(patient.id, machine, 3)
    items[2]["test_taken_by"] = "\x00"
    response = upload(api, operator, items, batch=True)
    assert response.status_code == 201, response.json
    assert (response.json["created"], response.json["rejected"]) == (2, 1)
    assert [e["loc"] for e in response.json["errors"]] == [["checkups", 2, "test_taken_by"]]
    assert stored(engine) == 2


def test_an_unknown_mode_is_a_query_problem(api, operator):
    response = api.post(URL + "?mode=maybe", as_=operator, json={"checkups": []})
    assert response.status_code == 422
    assert response.json["errors"][0]["loc"] == ["query", "mode"]


# Upload: the report outbox -------------------------------------------------------------


def test_one_outbox_row_per_user_that_got_new_checkups(api, engine, operator, machine):
    alice, bob, carol = (api.user() for _ in range(3))
    before = outbox(engine)
    items = [
        *checkup_session(alice.id, machine, 300),
        *checkup_session(bob.id, machine, 200, start_minute=1000),
    ]
    upload(api, operator, items)
    assert sorted(outbox(engine)[len(before) :]) == sorted([alice.id, bob.id])

    # Only Carol gets something new: only she is queued.
    upload(api, operator, [*items[:10], checkup_item(carol.id, machine)])
    assert outbox(engine)[len(before) + 2 :] == [carol.id]


# Upload: who may upload ----------------------------------------------------------------


def test_a_patient_uploads_their_own_checkups(api, engine, patient, machine):
    response = upload(api, patient, checkup_session(patient.id, machine, 3))
    assert response.status_code == 201
    assert response.json == {"created": 3, "duplicates": 0}
    assert api.get(URL, as_=patient).json["items"][0]["uploaded_by"] == str(patient.id)


def test_a_patient_cannot_upload_for_someone_else_existing_or_not(api, engine, patient, machine):
    other = api.user()
    items = [
        checkup_item(patient.id, machine),
        checkup_item(other.id, machine),
        checkup_item(uuid.uuid4(), machine),
    ]
    response = upload(api, patient, items)
    assert response.status_code == 422
    errors = response.json["errors"]
    assert [e["loc"] for e in errors] == [["checkups", 1, "user_id"], ["checkups", 2, "user_id"]]
    assert errors[0]["msg"] == errors[1]["msg"]  # the same answer: ids can't be probed
    assert stored(engine) == 0

    batch = upload(api, patient, items, batch=True)
    assert batch.json["created"] == 1
    assert batch.json["rejected"] == 2


def test_uploads_need_a_token(api, patient, machine):
    response = api.post(URL, json={"checkups": [checkup_item(patient.id, machine)]})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


# Upload: malformed bodies and limits ---------------------------------------------------


def test_a_body_that_is_not_json_is_415(api, operator):
    response = api.post(URL, as_=operator, data="checkups", content_type="text/plain")
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


def test_malformed_json_is_400(api, engine, operator):
    response = api.post(
        URL, as_=operator, data=b'{"checkups": [{"id": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert stored(engine) == 0


@pytest.mark.parametrize(
    "body", [b"[]", b'{"checkups": 5}', b'{"items": []}', b'{"checkups": [], "more": 1}']
)
def test_a_body_that_is_not_an_upload_is_422(api, operator, body):
    response = api.post(URL, as_=operator, data=body, content_type="application/json")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"]


def test_more_than_max_bulk_items_is_413(api, app, engine, operator, patient, machine, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_BULK_ITEMS", 5)
    items = checkup_session(patient.id, machine, 6)
    for mode in (False, True):
        response = upload(api, operator, items, batch=mode)
        assert response.status_code == 413
        assert response.mimetype == "application/problem+json"
        assert response.json["errors"][0]["loc"] == ["checkups"]
    assert upload(api, operator, items[:5]).status_code == 201


def test_a_body_over_max_content_length_is_a_413_problem(
    api, app, engine, operator, patient, machine, monkeypatch
):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2_000)
    body = orjson.dumps({"checkups": checkup_session(patient.id, machine, 20)})
    assert len(body) > 2_000
    response = api.post(URL, as_=operator, data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 413
    assert stored(engine) == 0


# Reading -------------------------------------------------------------------------------


@pytest.fixture
def history(api, operator, machine) -> dict[str, Any]:
    """Two patients with check-ups of several types over several days."""
    alice, bob = api.user(), api.user()
    items = []
    for day in range(1, 7):
        for kind in ("heart_rate", "blood_pressure"):
            items.append(
                checkup_item(alice.id, machine, kind, taken_at=f"2026-01-0{day}T08:00:00Z")
            )
    shared_instant = "2026-01-07T08:00:00Z"  # several rows share one timestamp
    items += [checkup_item(alice.id, machine, "spo2", taken_at=shared_instant) for _ in range(3)]
    items += [checkup_item(bob.id, machine, "heart_rate") for _ in range(2)]
    assert upload(api, operator, items).status_code == 201
    return {"alice": alice, "bob": bob, "items": items}


def _pages(api: ApiClient, as_: TestUser, query: str, limit: int) -> list[dict[str, Any]]:
    seen, cursor = [], None
    while True:
        path = f"{URL}?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(path, as_=as_)
        assert response.status_code == 200, response.json
        seen += response.json["items"]
        cursor = response.json["next_cursor"]
        if cursor is None:
            return seen


def test_list_is_newest_first_and_pages_through_everything_once(api, operator, history):
    alice = history["alice"]
    rows = _pages(api, operator, f"user_id={alice.id}", limit=4)
    assert len(rows) == 15
    assert len({r["id"] for r in rows}) == 15
    keys = [(r["taken_at"], r["id"]) for r in rows]
    assert keys == sorted(keys, reverse=True)


def test_list_filters_by_type_and_date_range(api, operator, history):
    alice = history["alice"]
    rows = _pages(api, operator, f"user_id={alice.id}&checkup_type=heart_rate", limit=2)
    assert len(rows) == 6
    assert {r["checkup_type"] for r in rows} == {"heart_rate"}

    window = "from=2026-01-02T08:00:00Z&to=2026-01-04T08:00:00Z"
    rows = _pages(api, operator, f"user_id={alice.id}&{window}", limit=50)
    assert sorted({r["taken_at"] for r in rows}) == [
        "2026-01-02T08:00:00Z",
        "2026-01-03T08:00:00Z",
    ]


def test_staff_list_everyone_without_a_user_filter(api, operator, history):
    assert len(_pages(api, operator, "", limit=7)) == 17


def test_a_patient_lists_only_their_own(api, history):
    alice, bob = history["alice"], history["bob"]
    assert len(_pages(api, bob, "", limit=50)) == 2
    assert len(_pages(api, bob, f"user_id={bob.id}", limit=50)) == 2
    response = api.get(f"{URL}?user_id={alice.id}", as_=bob)
    assert response.status_code == 404
    assert api.get(f"{URL}?user_id={uuid.uuid4()}", as_=bob).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "checkup_type=x-ray",
        "from=2026-01-01T00:00:00",  # no timezone
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "limit=501",
        "user_id=nobody",
        "colour=blue",
    ],
)
def test_list_query_problems_are_422(api, operator, query):
    response = api.get(f"{URL}?{query}", as_=operator)
    assert response.status_code == 422
    assert response.json["errors"][0]["loc"][0] == "query"


def test_a_forged_cursor_is_400(api, operator):
    response = api.get(f"{URL}?cursor=bm90LWEtY3Vyc29y", as_=operator)
    assert response.status_code == 400


def test_a_patient_reads_only_their_own_checkup(api, history):
    alice, bob = history["alice"], history["bob"]
    alices = history["items"][0]["id"]
    assert api.get(URL + alices, as_=alice).status_code == 200
    assert api.get(URL + alices, as_=bob).status_code == 404
    assert api.get(URL + str(uuid.uuid4()), as_=alice).status_code == 404


# Deleting ------------------------------------------------------------------------------


def test_an_admin_deletes_a_checkup_and_the_report_is_queued(api, engine, operator, history):
    admin = api.user(Role.ADMIN)
    alice = history["alice"]
    target = history["items"][0]["id"]
    before = outbox(engine)
    assert api.delete(URL + target, as_=operator).status_code == 403
    assert api.delete(URL + target, as_=alice).status_code == 403
    assert stored(engine) == 17

    response = api.delete(URL + target, as_=admin)
    assert response.status_code == 204
    assert stored(engine) == 16
    assert outbox(engine)[len(before) :] == [alice.id]
    assert api.get(URL + target, as_=admin).status_code == 404
    assert api.delete(URL + target, as_=admin).status_code == 404


def test_a_corrected_checkup_is_a_delete_and_a_new_upload(api, operator, patient, machine):
    admin = api.user(Role.ADMIN)
    item = checkup_item(patient.id, machine)
    upload(api, operator, [item])
    corrected = {**item, "information": {"systolic": 130, "diastolic": 85}}
    assert upload(api, operator, [corrected]).status_code == 409
    api.delete(URL + item["id"], as_=admin)
    assert upload(api, operator, [corrected]).json == {"created": 1, "duplicates": 0}


# Roles and documentation -----------------------------------------------------------------


def _checkup_routes(app: Any) -> list[tuple[str, str, Any]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/checkups"):
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, rule.rule, view))
    return routes


def test_every_checkup_route_declares_its_roles(app):
    routes = _checkup_routes(app)
    assert {(m, r) for m, r, _ in routes} == {
        ("POST", "/api/v1/checkups/"),
        ("GET", "/api/v1/checkups/"),
        ("GET", "/api/v1/checkups/<uuid:checkup_id>"),
        ("DELETE", "/api/v1/checkups/<uuid:checkup_id>"),
    }
    for _, _, view in routes:
        assert getattr(view, "allowed_roles", None), view


@pytest.mark.parametrize("role", list(Role))
def test_role_matrix(api, app, role):
    caller = api.user(role)
    for method, rule, view in _checkup_routes(app):
        path = rule.replace("<uuid:checkup_id>", str(uuid.uuid4()))
        kwargs: dict[str, Any] = {"json": {"checkups": []}} if method == "POST" else {}
        anonymous = api.call(method, path, **kwargs)
        assert anonymous.status_code == 401, (method, rule)
        response = api.call(method, path, as_=caller, **kwargs)
        if role in view.allowed_roles:
            assert response.status_code in (200, 404), (method, rule, role)
        else:
            assert response.status_code == 403, (method, rule, role)
    assert ALL_ROLES  # every role is exercised by the parametrisation


def test_openapi_documents_the_upload(api):
    spec = api.get("/openapi.json").json
    post = spec["paths"]["/api/v1/checkups/"]["post"]
    assert {"200", "201", "409", "413", "415", "422"} <= set(post["responses"])
    assert "requestBody" in post
    assert "patient" in post["description"]
    schemas = orjson.dumps(spec["components"]).decode()
    for model in ("BloodPressureCheckupCreate", "EcgCheckupCreate", "CheckupUploadRead"):
        assert model in schemas


def test_a_resend_of_what_a_machine_took_before_it_was_retired_is_a_duplicate(
    api, engine, operator, patient, machine
):
    taken = checkup_item(patient.id, machine)
    assert upload(api, operator, [taken]).status_code == 201
    _retire(api, machine)
    changed = {**taken, "test_taken_by": "someone else"}
    assert upload(api, operator, [taken]).json["duplicates"] == 1  # the first answer was lost
    conflict = assert_problem(upload(api, operator, [changed]), 409)
    assert [e["type"] for e in conflict["errors"]] == ["conflict"]
    fresh = assert_problem(upload(api, operator, [taken, checkup_item(patient.id, machine)]), 422)
    assert [e["loc"] for e in fresh["errors"]] == [["checkups", 1, "machine_id"]]
    assert stored(engine) == 1
