"""HTTP for the audit trail: admins read it; nobody writes it over HTTP."""

from __future__ import annotations

from apiflask import APIBlueprint

from healthapp.audit import service
from healthapp.audit.schemas import AuditEventListQuery, AuditEventPage, AuditEventRead
from healthapp.auth import policy
from healthapp.auth.access import requires
from healthapp.auth.privileged import privileged
from healthapp.database import db
from healthapp.request_parsing import query_args

bp = APIBlueprint("audit", __name__, url_prefix="/api/v1/audit", tag="Audit")


@bp.get("/")
@bp.output(AuditEventPage)
@bp.doc(responses=[400, 401, 403, 422])
@requires(policy.READ_AUDIT_TRAIL)
@privileged(policy.READ_AUDIT_TRAIL)
@query_args(AuditEventListQuery)
def list_events(query: AuditEventListQuery) -> AuditEventPage:
    """The audit trail (admin), newest first; ``from`` is inclusive, ``to`` exclusive.

    Filter by ``?username=`` (whose data), ``?action=`` and the time range.
    """
    events, next_cursor = service.list_events(session=db.session, query=query)
    return AuditEventPage(
        items=[AuditEventRead.model_validate(e) for e in events], next_cursor=next_cursor
    )
