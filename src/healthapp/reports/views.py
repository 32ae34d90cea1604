"""HTTP of the Reports API (SPEC §7): two paths, Redis only, conditional GETs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, request

from healthapp.audit.stream import publish_report_list_read, publish_report_read
from healthapp.auth import policy
from healthapp.auth.access import ALL_ROLES, STAFF, current_principal, requires
from healthapp.domain.report_codec import to_micros
from healthapp.domain.report_render import report_body
from healthapp.errors import InvalidCursor
from healthapp.json_provider import dumps_bytes
from healthapp.pagination import decode_cursor, encode_cursor
from healthapp.problems import not_found
from healthapp.reports.schemas import ReportListQuery, ReportListRead, ReportQuery, ReportRead
from healthapp.reports.store import (
    CheckupFilter,
    ReportStore,
    entity_tag,
    first_page_body,
    listed_checkup_item,
)
from healthapp.request_context import current_actor
from healthapp.request_parsing import query_args
from healthapp.webapp import accepts_gzip

bp = APIBlueprint("reports", __name__, url_prefix="/api/v1/users", tag="Reports")

_ERRORS = [304, 400, 401, 422, 503]


def report_store() -> ReportStore:
    """The app's report store."""
    store: ReportStore = current_app.extensions["healthapp.report_store"]
    return store


def _query_key() -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(request.args.items(multi=True)))


def _conditional(
    body: dict[str, Any] | bytes,
    *,
    etag: str,
    last_modified: str | None,
    gzipped: bool = False,
) -> Response:
    """``body`` with its validators; a 304 when the client's copy is current.

    A ``gzipped`` body goes out with ``Content-Encoding: gzip`` and a weak ETag: the
    encoded bytes are another representation of the same content (as nginx does).
    """
    encoded = body if isinstance(body, bytes) else dumps_bytes(body)
    response = current_app.response_class(encoded, mimetype="application/json")
    if gzipped:
        response.content_encoding = "gzip"
    response.set_etag(etag, weak=gzipped)
    if last_modified:
        response.last_modified = datetime.fromisoformat(last_modified)
    response.make_conditional(request)
    return response


def _discloses(response: Response) -> bool:
    """Whether ``response`` hands over report data, so that it is an audited read: a 304
    sends nothing the client did not have, and a ``HEAD`` sends no body."""
    return response.status_code == 200 and request.method != "HEAD"


def _report_position(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    moment, checkup_id = decode_cursor(cursor, arity=2)
    if not isinstance(moment, int) or not isinstance(checkup_id, str):
        raise InvalidCursor()
    return moment, checkup_id


@bp.get("/<username>/")
@bp.output(ReportRead)
@bp.doc(responses=[*_ERRORS, 404])
@requires(ALL_ROLES)
@query_args(ReportQuery)
def get_report(username: str, query: ReportQuery) -> Response:
    """One user's report (that patient, operator, admin); check-ups newest first."""
    principal = current_principal()
    if not policy.can_read_report(principal, username):
        raise not_found("report")
    response = _first_page(username, principal) if query.is_first_page() else None
    if response is None:
        response = _filtered_page(username, query, principal)
    response.vary.add("Accept-Encoding")  # the first page may be sent gzipped
    if _discloses(response):
        actor = current_actor()
        publish_report_read(
            report_store().redis,
            actor,
            username,
            actor.request_id,
            maxlen=current_app.config["AUDIT_STREAM_MAXLEN"],
        )
    return response


def _first_page(username: str, principal: policy.Principal) -> Response | None:
    """The first page as the sync stored it (``None``: none stored, build it instead)."""
    stored = report_store().first_page(username)
    if stored is None:
        return None
    if not policy.can_read_stored_report(principal, stored.owner):
        raise not_found("report")
    gzipped = stored.gzip if accepts_gzip(request.headers.get("Accept-Encoding")) else None
    return _conditional(
        gzipped or first_page_body(stored, username),
        etag=entity_tag(stored.version, _query_key()),
        last_modified=stored.synced_at,
        gzipped=gzipped is not None,
    )


def _filtered_page(username: str, query: ReportQuery, principal: policy.Principal) -> Response:
    """A page assembled from the stored chunks its filters and cursor reach."""
    filters = CheckupFilter(
        checkup_type=query.checkup_type,
        from_micros=to_micros(query.from_) if query.from_ else None,
        to_micros=to_micros(query.to) if query.to else None,
        after=_report_position(query.cursor),
    )
    page = report_store().get_report(username, filters=filters, limit=query.limit)
    if page is None or not policy.can_read_stored_report(principal, page.owner):
        raise not_found("report")
    next_cursor = encode_cursor(list(page.next_key)) if page.next_key else None
    return _conditional(
        report_body(page.meta, page.records, next_cursor),
        etag=entity_tag(page.version, _query_key()),
        last_modified=page.synced_at,
    )


@bp.get("/")
@bp.output(ReportListRead)
@bp.doc(responses=[*_ERRORS, 403])
@requires(STAFF)
@query_args(ReportListQuery)
def list_reports(query: ReportListQuery) -> Response:
    """Every user's report (operator, admin), by username, with their newest check-ups."""
    after = None
    if query.cursor is not None:
        [after] = decode_cursor(query.cursor, arity=1)
        if not isinstance(after, str):
            raise InvalidCursor()
    store = report_store()
    names, generation = store.list_usernames(after=after, limit=query.limit)
    more = len(names) > query.limit
    names = names[: query.limit]
    reports = (
        store.newest_checkups(names, generation=generation, per_user=query.checkups_per_user)
        if names and generation is not None
        else {}
    )
    users = {
        name: {
            "checkups": [listed_checkup_item(record) for record in records],
            "checkup_count": meta["count"],
        }
        for name, (meta, records) in reports.items()
    }
    body = {"users": users, "next_cursor": encode_cursor([names[-1]]) if more else None}
    versions = [meta["hash"] for meta, _records in reports.values()]
    synced = [meta["synced_at"] for meta, _records in reports.values()]
    response = _conditional(
        body,
        etag=entity_tag(str(generation), *versions, _query_key()),
        last_modified=max(synced) if synced else None,
    )
    if _discloses(response):
        actor = current_actor()
        publish_report_list_read(
            store.redis,
            actor,
            list(reports),
            actor.request_id,
            maxlen=current_app.config["AUDIT_STREAM_MAXLEN"],
        )
    return response
