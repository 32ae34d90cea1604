"""Integration tests of the ingest service on real PostgreSQL: transactions and concurrency."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy import Engine, text

from healthapp.checkups import ingest as checkups_ingest
from healthapp.checkups import service
from healthapp.checkups.schemas import BulkParse, parse_bulk
from healthapp.database import db
from healthapp.domain.roles import Role
from healthapp.errors import DomainError
from healthapp.problems import Problem, from_domain_error
from tests.factories import ApiClient, checkup_item, checkup_session


def parsed(items: list[dict[str, Any]]) -> BulkParse:
    return parse_bulk(orjson.dumps({"checkups": items}), max_items=10_000)


def scalar(engine: Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def stored(engine: Engine) -> int:
    return int(scalar(engine, "SELECT count(*) FROM checkups"))


def queued(engine: Engine) -> int:
    return int(scalar(engine, "SELECT count(*) FROM report_outbox"))


def plain_conninfo(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def people(api: ApiClient) -> dict[str, Any]:
    return {
        "operator": api.user(Role.OPERATOR),
        "alice": api.user(),
        "bob": api.user(),
        "machine": api.machine(),
    }


def ingest(app: Any, items: list[dict[str, Any]], uploader: uuid.UUID, **kw: Any) -> Any:
    """Run one upload through the service in its own app context (its own session)."""
    with app.app_context():
        return checkups_ingest.ingest_checkups(
            session=db.session,
            parsed=parsed(items),
            uploaded_by=uploader,
            only_user_id=kw.get("only_user_id"),
            atomic=kw.get("atomic", True),
        )


def test_a_whole_session_retried_stores_each_checkup_once(app, engine, people):
    items = checkup_session(people["alice"].id, people["machine"], 500)
    before = queued(engine)
    first = ingest(app, items, people["operator"].id)
    assert (first.created, first.duplicates, first.errors) == (500, 0, [])
    assert queued(engine) == before + 1  # one outbox row for the one user

    # The phone lost the answer and sends the whole session again, twice.
    for _ in range(2):
        retry = ingest(app, items, people["operator"].id)
        assert (retry.created, retry.duplicates, retry.errors) == (0, 500, [])
    assert stored(engine) == 500
    assert queued(engine) == before + 1


def test_a_session_retried_after_a_rejection_lands_whole(app, engine, people):
    alice, machine = people["alice"], people["machine"]
    items = checkup_session(alice.id, machine, 100)
    good = items[42]
    items[42] = {**good, "information": {"systolic": 10, "diastolic": 5}}
    before = queued(engine)
    with pytest.raises(DomainError) as caught:
        ingest(app, items, people["operator"].id)
    assert from_domain_error(caught.value).status == 422
    assert stored(engine) == 0
    assert queued(engine) == before

    items[42] = good
    outcome = ingest(app, items, people["operator"].id)
    assert (outcome.created, outcome.duplicates) == (100, 0)


def test_a_conflict_found_after_the_insert_rolls_everything_back(app, engine, people):
    alice, bob, machine = people["alice"], people["bob"], people["machine"]
    existing = checkup_item(alice.id, machine)
    ingest(app, [existing], people["operator"].id)
    rows, entries = stored(engine), queued(engine)

    # The new rows are inserted before the conflict is seen; all of it must go.
    upload = [
        *checkup_session(bob.id, machine, 50),
        {**existing, "test_taken_by": "another nurse"},
    ]
    with pytest.raises(DomainError) as caught:
        ingest(app, upload, people["operator"].id)
    assert from_domain_error(caught.value).status == 409
    assert caught.value.errors == [
        {"loc": ["checkups", 50, "id"], "msg": checkups_ingest._CONFLICT, "type": "conflict"}
    ]
    assert stored(engine) == rows
    assert queued(engine) == entries

    # The staging table went with the transaction: the next upload works as usual.
    outcome = ingest(app, upload[:50], people["operator"].id)
    assert outcome.created == 50


def test_batch_mode_keeps_the_valid_items_and_counts_each_rejected_item_once(app, engine, people):
    alice, machine = people["alice"], people["machine"]
    items = checkup_session(alice.id, machine, 10)
    items[2] = {**items[2], "user_id": str(uuid.uuid4()), "machine_id": str(uuid.uuid4())}
    outcome = ingest(app, items, people["operator"].id, atomic=False)
    assert outcome.created == 9
    assert outcome.rejected == 1
    assert [e["loc"] for e in outcome.errors] == [
        ["checkups", 2, "user_id"],
        ["checkups", 2, "machine_id"],
    ]


def test_a_patient_only_stores_their_own(app, engine, people):
    alice, bob, machine = people["alice"], people["bob"], people["machine"]
    items = [checkup_item(alice.id, machine), checkup_item(bob.id, machine)]
    outcome = ingest(app, items, alice.id, only_user_id=alice.id, atomic=False)
    assert outcome.created == 1
    assert outcome.errors[0]["loc"] == ["checkups", 1, "user_id"]
    assert stored(engine) == 1


def test_information_is_stored_as_sent_without_nulls(app, engine, people):
    item = checkup_item(
        people["alice"].id,
        people["machine"],
        "spo2",
        information={"percent": 97, "pulse": None, "notes": "after a walk"},
    )
    ingest(app, [item], people["operator"].id)
    stored_information = scalar(engine, "SELECT information FROM checkups")
    assert stored_information == {"percent": 97.0, "notes": "after a walk"}


# Concurrency ---------------------------------------------------------------------------


def run_in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread, released together; their results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def runner(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=runner, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("attempt", range(3))
def test_two_concurrent_uploads_of_the_same_session_store_it_once(app, engine, people, attempt):
    alice, machine, operator = people["alice"], people["machine"], people["operator"]
    items = checkup_session(alice.id, machine, 3_000, start_minute=attempt * 5_000)
    headers = {"Authorization": f"Bearer {operator.access_token}"}
    body = {"checkups": items}

    def upload() -> tuple[int, Any]:
        response = app.test_client().post("/api/v1/checkups/", json=body, headers=headers)
        return response.status_code, response.json

    first, second = run_in_threads(upload, upload)
    assert {first[0], second[0]} <= {200, 201}, (first, second)
    assert first[1]["created"] + second[1]["created"] == 3_000
    assert first[1]["duplicates"] + second[1]["duplicates"] == 3_000
    assert stored(engine) == 3_000


def _hold_same_ids(engine: Engine, items: list[dict[str, Any]], uploader: uuid.UUID) -> Any:
    """Another connection inserts ``items`` and keeps its transaction open."""
    conn = psycopg.connect(plain_conninfo(engine))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,"
            " test_taken_by, taken_at, uploaded_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    i["id"],
                    i["user_id"],
                    i["machine_id"],
                    i["checkup_type"],
                    orjson.dumps(i["information"]).decode(),
                    i["test_taken_by"],
                    i["taken_at"],
                    uploader,
                )
                for i in items
            ],
        )
    return conn


def _waits_on_a_lock(engine: Engine) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = scalar(
            engine,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        if waiting:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("other_commits", [True, False])
def test_an_upload_racing_an_uncommitted_one_waits_then_counts_right(
    app, engine, people, other_commits
):
    alice, machine, operator = people["alice"], people["machine"], people["operator"]
    items = checkup_session(alice.id, machine, 200)
    other = _hold_same_ids(engine, items, operator.id)
    try:
        outcome: list[Any] = []
        racer = threading.Thread(
            target=lambda: outcome.append(ingest(app, items, operator.id)), daemon=True
        )
        racer.start()
        assert _waits_on_a_lock(engine)  # ON CONFLICT waits for the other transaction
        assert racer.is_alive()
        if other_commits:
            other.commit()
        else:
            other.rollback()
        racer.join(timeout=30)
    finally:
        other.close()
    (result,) = outcome
    if other_commits:
        assert (result.created, result.duplicates) == (0, 200)
    else:
        assert (result.created, result.duplicates) == (200, 0)
    assert stored(engine) == 200


def test_a_racing_upload_with_other_content_is_a_conflict(app, engine, people):
    alice, machine, operator = people["alice"], people["machine"], people["operator"]
    items = checkup_session(alice.id, machine, 20)
    other = _hold_same_ids(engine, [{**items[7], "test_taken_by": "someone else"}], operator.id)
    try:
        outcome: list[Any] = []

        def race() -> None:
            try:
                ingest(app, items, operator.id)
            except DomainError as error:
                outcome.append(from_domain_error(error))

        racer = threading.Thread(target=race, daemon=True)
        racer.start()
        assert _waits_on_a_lock(engine)
        other.commit()
        racer.join(timeout=30)
    finally:
        other.close()
    (problem,) = outcome
    assert problem.status == 409
    assert [e["loc"] for e in problem.errors] == [["checkups", 7, "id"]]
    assert stored(engine) == 1  # only the other transaction's row


# Reading and deleting --------------------------------------------------------------------


def test_delete_queues_the_users_report_in_the_same_transaction(app, engine, people):
    alice, machine = people["alice"], people["machine"]
    item = checkup_item(alice.id, machine)
    ingest(app, [item], people["operator"].id)
    before = queued(engine)
    with app.app_context():
        service.delete(session=db.session, checkup_id=uuid.UUID(item["id"]))
    assert stored(engine) == 0
    assert queued(engine) == before + 1


def test_concurrent_uploads_of_shared_ids_in_opposite_orders_do_not_deadlock(app, engine, people):
    alice, machine, operator = people["alice"], people["machine"], people["operator"]
    items = checkup_session(alice.id, machine, 3_000)
    headers = {"Authorization": f"Bearer {operator.access_token}"}

    def upload(order: list[dict[str, Any]]) -> Callable[[], tuple[int, Any]]:
        def call() -> tuple[int, Any]:
            response = app.test_client().post(
                "/api/v1/checkups/", json={"checkups": order}, headers=headers
            )
            return response.status_code, response.json

        return call

    first, second = run_in_threads(upload(items), upload(items[::-1]))
    assert {first[0], second[0]} <= {200, 201}, (first, second)
    assert first[1]["created"] + second[1]["created"] == 3_000
    assert stored(engine) == 3_000


@pytest.mark.parametrize("retry", [False, True], ids=["first-upload", "retry"])
def test_a_machine_deleted_while_the_upload_runs_fails_it_cleanly(app, engine, people, retry):
    alice, machine, operator = people["alice"], people["machine"], people["operator"]
    items = checkup_session(alice.id, people["machine"], 30)
    if retry:  # a retry takes the staging path: some ids are stored already
        spare = ApiClient(app, app.test_client()).machine()
        ingest(app, [{**items[0], "machine_id": str(spare)}], operator.id, atomic=False)
        items[0]["machine_id"] = str(spare)
    rows, entries = stored(engine), queued(engine)
    deleter = psycopg.connect(plain_conninfo(engine))
    try:
        deleter.execute("DELETE FROM machines WHERE id = %s", (machine,))
        outcome: list[Any] = []

        def race() -> None:
            try:
                outcome.append(ingest(app, items, operator.id))
            except DomainError as error:
                outcome.append(from_domain_error(error))

        racer = threading.Thread(target=race, daemon=True)
        racer.start()
        assert _waits_on_a_lock(engine)  # the foreign key check waits for the delete
        deleter.commit()
        racer.join(timeout=30)
    finally:
        deleter.close()
    (problem,) = outcome
    assert isinstance(problem, Problem)
    assert problem.status == 409
    assert stored(engine) == rows
    assert queued(engine) == entries
