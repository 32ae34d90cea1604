"""Both OpenAPI documents: one schema per model, operation ids, headers, 304s, patterns."""

from __future__ import annotations

import re
from typing import Any

import pytest

from healthapp import config
from healthapp.app import create_app as create_core_app
from healthapp.reports.app import create_app as create_reports_app
from healthapp.schemas_common import date_pattern, datetime_pattern, year_pattern


def _document(factory: Any, **settings_values: Any) -> dict[str, Any]:
    settings = config.Testing()
    for name, value in settings_values.items():
        setattr(settings, name, value)
    document: dict[str, Any] = factory(settings).test_client().get("/openapi.json").json
    return document


CORE = _document(create_core_app, DATABASE_URL="postgresql://unused@127.0.0.1/unused")
REPORTS = _document(create_reports_app, REDIS_URL="redis://127.0.0.1:1/0")
DOCUMENTS = pytest.mark.parametrize("document", [CORE, REPORTS], ids=["core", "reports"])


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


@DOCUMENTS
def test_each_model_has_one_schema_under_its_own_name(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert not [name for name in schemas if "." in name]
    titles = [schema["title"] for schema in schemas.values() if "title" in schema]
    assert len(titles) == len(set(titles))


@DOCUMENTS
def test_every_operation_has_a_unique_readable_operation_id(document: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for _path, _method, operation in _operations(document)]
    assert all(isinstance(i, str) and re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ids), ids
    assert len(ids) == len(set(ids))


def test_operation_ids_are_the_view_names() -> None:
    ids = {operation["operationId"] for _path, _method, operation in _operations(CORE)}
    assert {"create_user", "get_user", "upload_checkups", "get_checkup", "create_token"} <= ids
    ids = {operation["operationId"] for _path, _method, operation in _operations(REPORTS)}
    assert ids == {"get_report", "list_reports", "healthz", "readyz"}


def test_blood_groups_carry_member_names_for_client_generators() -> None:
    group = CORE["components"]["schemas"]["BloodGroup"]
    names = dict(zip(group["enum"], group["x-enum-varnames"], strict=True))
    assert names["A+"] == "A_POSITIVE"
    assert names["AB-"] == "AB_NEGATIVE"
    assert REPORTS["components"]["schemas"]["BloodGroup"] == group


def test_a_304_has_no_body_and_is_asked_for_with_if_none_match() -> None:
    operation = REPORTS["paths"]["/api/v1/users/{username}/"]["get"]
    not_modified = operation["responses"]["304"]
    assert "content" not in not_modified
    assert "ETag" in not_modified["headers"]
    assert {"$ref": "#/components/parameters/IfNoneMatch"} in operation["parameters"]
    assert {"ETag", "Last-Modified"} <= set(operation["responses"]["200"]["headers"])


@DOCUMENTS
def test_every_answer_documents_its_request_id(document: dict[str, Any]) -> None:
    for _path, _method, operation in _operations(document):
        assert {"$ref": "#/components/parameters/RequestId"} in operation["parameters"]
        for response in operation["responses"].values():
            assert "X-Request-ID" in response["headers"]


def test_rate_limited_operations_document_their_headers() -> None:
    for path in ("/api/v1/auth/token", "/api/v1/checkups/"):
        responses = CORE["paths"][path]["post"]["responses"]
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
            responses["429"]["headers"]
        )
        assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in CORE["paths"]["/readyz"]["get"]["responses"]["503"]["headers"]


def test_the_upload_documents_both_successful_answers() -> None:
    responses = CORE["paths"]["/api/v1/checkups/"]["post"]["responses"]
    for status in ("200", "201"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/CheckupUploadRead"}


def test_uuid_path_parameters_are_documented_as_uuids() -> None:
    parameters = CORE["paths"]["/api/v1/users/{user_id}"]["get"]["parameters"]
    [user_id] = [p for p in parameters if p.get("name") == "user_id"]
    assert user_id["schema"] == {"type": "string", "format": "uuid"}


def test_patch_fields_that_cannot_be_removed_are_not_nullable() -> None:
    schemas = CORE["components"]["schemas"]
    assert schemas["DiseaseUpdate"]["properties"]["name"]["type"] == "string"
    assert "anyOf" in schemas["DiseaseUpdate"]["properties"]["details"]  # null clears it
    assert schemas["MachineUpdate"]["properties"]["active"]["type"] == "boolean"
    assert "anyOf" not in schemas["UserUpdate"]["properties"]["email"]


@pytest.mark.parametrize("last", [2000, 2009, 2010, 2026, 2099])
def test_year_pattern_matches_exactly_the_years_up_to_the_last(last: int) -> None:
    pattern = re.compile(year_pattern(last))
    years = [year for year in range(1800, 2200) if pattern.fullmatch(str(year))]
    assert years == list(range(1900, last + 1))


def test_date_and_timestamp_patterns() -> None:
    assert re.fullmatch(date_pattern(2026), "2026-02-28")
    assert not re.fullmatch(date_pattern(2026), "2027-01-01")
    assert not re.fullmatch(date_pattern(2026), "1899-12-31")
    assert re.fullmatch(datetime_pattern(2026), "2026-03-01T09:30:00.123+02:00")
    assert re.fullmatch(datetime_pattern(2026), "1900-01-01T00:00:00Z")
    assert not re.fullmatch(datetime_pattern(2026), "2026-03-01T09:30:00")  # no offset
