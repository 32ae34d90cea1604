"""Assertions shared by the suite: the problem-document shape of SPEC §3."""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse

from healthapp.problems import PROBLEM_MEDIA_TYPE

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "errors"}


def assert_problem(response: TestResponse, status: int, context: str = "") -> dict[str, Any]:
    """``response`` is an RFC 9457 problem document with ``status``; returns its body."""
    context = context or f"{response.status_code} {response.get_data(as_text=True)[:500]}"
    assert response.status_code == status, context
    assert response.mimetype == PROBLEM_MEDIA_TYPE, context
    body = response.get_json(force=True)
    assert body.keys() >= PROBLEM_MEMBERS, context
    assert body["status"] == status, context
    assert isinstance(body["type"], str), context
    assert isinstance(body["title"], str), context
    assert isinstance(body["detail"], str), context
    assert body["detail"], context
    assert isinstance(body["errors"], list), context
    for error in body["errors"]:
        assert isinstance(error["loc"], list), context
        assert isinstance(error["msg"], str), context
    return body


def error_locs(body: dict[str, Any]) -> list[list[Any]]:
    """The ``loc`` of every entry in a problem document's ``errors``."""
    return [error["loc"] for error in body["errors"]]


def assert_client_error(response: TestResponse, context: str = "") -> dict[str, Any]:
    """``response`` is a 4xx problem document (never a 5xx for bad input)."""
    context = context or f"{response.status_code} {response.get_data(as_text=True)[:500]}"
    assert 400 <= response.status_code < 500, context
    return assert_problem(response, response.status_code, context)
