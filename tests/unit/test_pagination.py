"""Opaque keyset cursors: round trips, and every tampered cursor is a 400 problem."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from healthapp.errors import InvalidCursor
from healthapp.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    PageQuery,
    decode_cursor,
    decode_time_id_cursor,
    encode_cursor,
    encode_time_id_cursor,
)
from healthapp.problems import from_domain_error, problem_response


def _cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def test_cursor_round_trips() -> None:
    key = ["2026-01-15T09:30:00.123456+00:00", str(uuid.uuid4())]
    assert decode_cursor(encode_cursor(key), arity=2) == key


def test_time_id_cursor_round_trips() -> None:
    moment, row_id = datetime(2026, 1, 15, 9, 30, 0, 123456, tzinfo=UTC), uuid.uuid4()
    cursor = encode_cursor([moment.isoformat(), str(row_id)])
    assert encode_time_id_cursor(moment, row_id) == cursor
    assert decode_time_id_cursor(cursor) == (moment, row_id)


def test_cursor_is_opaque_and_url_safe() -> None:
    cursor = encode_cursor(["2026-01-15T09:30:00+00:00", str(uuid.uuid4())])
    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


TAMPERED = {
    "not base64": "!!!",
    "not json": base64.urlsafe_b64encode(b"{nope").decode(),
    "not utf-8": base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    "object": _cursor_of({"a": 1}),
    "too short": _cursor_of(["2026-01-15T09:30:00+00:00"]),
    "too long": _cursor_of(["2026-01-15T09:30:00+00:00", str(uuid.uuid4()), 1]),
    "numbers": _cursor_of([1, 2]),
    "nulls": _cursor_of([None, None]),
    "id is a number": _cursor_of(["2026-01-15T09:30:00+00:00", 5]),
    "id is a list": _cursor_of(["2026-01-15T09:30:00+00:00", ["x"]]),
    "time is a list": _cursor_of([["2026"], str(uuid.uuid4())]),
    "bad time": _cursor_of(["2026-13-45T99:00:00", str(uuid.uuid4())]),
    "bad id": _cursor_of(["2026-01-15T09:30:00+00:00", "not-a-uuid"]),
    "empty": "",
}


@pytest.mark.parametrize("cursor", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_cursor_is_a_400_problem(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode_time_id_cursor(cursor)
    problem = from_domain_error(caught.value)
    assert problem.status == 400
    assert problem.errors == [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]


def test_tampered_cursor_problem_document() -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor("!!!", arity=1)
    response = problem_response(from_domain_error(caught.value))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_data() == (
        b'{"type":"https://myhealthapp.example/problems/400","title":"Malformed request",'
        b'"status":400,"detail":"The cursor is not valid; start again without one.",'
        b'"errors":[{"loc":["query","cursor"],"msg":"invalid cursor"}]}'
    )


def test_page_query_defaults_and_bounds() -> None:
    assert PageQuery().limit == DEFAULT_LIMIT == 50
    assert MAX_LIMIT == 500
    assert PageQuery.model_validate({"limit": "500"}).limit == 500
    for bad in ("0", "501", "-1", "1.5", "ten", "9" * 40):
        with pytest.raises(ValidationError):
            PageQuery.model_validate({"limit": bad})


def test_page_query_rejects_unknown_parameters_and_long_cursors() -> None:
    with pytest.raises(ValidationError):
        PageQuery.model_validate({"page": "2"})
    with pytest.raises(ValidationError):
        PageQuery.model_validate({"cursor": "A" * 513})
