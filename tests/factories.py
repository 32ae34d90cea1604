"""Test data in one place: users of each role, machines, tokens and authenticated calls."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, replace
from typing import Any

import jwt
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from healthapp import config
from healthapp.accounts import service as accounts
from healthapp.accounts.schemas import UserCreate
from healthapp.auth import token_store
from healthapp.auth.keys import signing_keys
from healthapp.auth.policy import Principal
from healthapp.auth.tokens import TokenIssuer, TokenType
from healthapp.database import db
from healthapp.domain.roles import Role
from healthapp.machines import service as machines
from healthapp.machines.schemas import MachineCreate
from healthapp.sessions.service import TOKEN_ISSUER_EXTENSION, token_issuer
from healthapp.unit_of_work import unit_of_work

PASSWORD = "correct-horse-battery"


def sign(app: Any, payload: dict[str, Any], **headers: Any) -> str:
    """``payload`` signed as the Core API ``app`` signs tokens (its key, its ``kid``), with
    ``headers`` added: for tests that need a token the API would not mint."""
    keys = app.extensions[TOKEN_ISSUER_EXTENSION].keys
    return jwt.encode(
        payload, keys.signing, algorithm="EdDSA", headers={"kid": keys.signing_kid, **headers}
    )


def mint(
    app: Any,
    user_id: uuid.UUID,
    username: str,
    role: Role | str = Role.PATIENT,
    *,
    token_type: TokenType = TokenType.ACCESS,
    family: uuid.UUID | None = None,
) -> str:
    """A token as the stack would issue it, for a user the test made without the Core API;
    ``app`` is either API (the Reports API's tokens come from its instance's key pair)."""
    issuer = app.extensions.get(TOKEN_ISSUER_EXTENSION)
    if issuer is None:
        settings = config.Testing(HEALTHAPP_INSTANCE_PATH=app.config["INSTANCE_PATH"])
        issuer = TokenIssuer(
            signing_keys(settings),
            access_lifetime=settings.JWT_ACCESS_TOKEN_EXPIRES,
            refresh_lifetime=settings.JWT_REFRESH_TOKEN_EXPIRES,
        )
    principal = Principal(id=user_id, username=username, role=Role(role))
    token, _claims = issuer.issue(principal, token_type=token_type, family=family or uuid.uuid4())
    return token


def claims_of(token: str) -> dict[str, Any]:
    """A token's claims, read without checking it."""
    return dict(jwt.decode(token, options={"verify_signature": False}))


_counter = itertools.count(1)


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # a helper, not a test class for pytest to collect

    id: uuid.UUID
    username: str
    role: Role
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class ApiClient:
    """Calls the Core API as a given user; creates users and machines through the services."""

    def __init__(self, app: Any, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def user(self, role: Role = Role.PATIENT, username: str | None = None) -> TestUser:
        """A new user of ``role`` with tokens."""
        username = username or f"{role.value}{next(_counter)}-{uuid.uuid4().hex[:6]}"
        with self.app.app_context():
            user = accounts.create(
                session=db.session,
                user_in=UserCreate(
                    username=username, email=f"{username}@example.com", password=PASSWORD, role=role
                ),
            )
            principal = Principal(id=user.id, username=user.username, role=role)
            with unit_of_work(db.session):
                tokens = token_store.start(
                    session=db.session, issuer=token_issuer(), principal=principal
                )
            return TestUser(
                id=user.id,
                username=user.username,
                role=role,
                access_token=tokens.access_token,
                refresh_token=tokens.refresh_token,
            )

    def set_stored_role(self, user: TestUser, role: Role) -> None:
        """Change ``user``'s role in PostgreSQL alone, behind the back of their tokens: they
        still claim the old role, as a token that revocation has not reached yet does."""
        self._change_stored_user(
            "UPDATE users SET role = :role WHERE id = :id", role=role.value, id=user.id
        )

    def delete_stored_user(self, user: TestUser) -> None:
        """Delete ``user``'s row in PostgreSQL alone; their tokens are left as they were."""
        self._change_stored_user("DELETE FROM users WHERE id = :id", id=user.id)

    def _change_stored_user(self, sql: str, **values: Any) -> None:
        from sqlalchemy import text

        with self.app.app_context():
            assert db.session.execute(text(sql), values).rowcount == 1  # type: ignore[attr-defined]
            db.session.commit()

    def machine(self, machine_type: str = "blood_pressure", **fields: Any) -> uuid.UUID:
        """A new machine's id."""
        with self.app.app_context():
            machine = machines.create(
                session=db.session,
                machine_in=MachineCreate(
                    machine_type=machine_type,
                    serial_number=fields.pop("serial_number", f"SN-{uuid.uuid4().hex[:12]}"),
                    manufacturer=fields.pop("manufacturer", "Acme Medical"),
                    **fields,
                ),
            )
            return machine.id

    def call(
        self, method: str, path: str, as_: TestUser | None = None, **kwargs: Any
    ) -> TestResponse:
        headers = dict(kwargs.pop("headers", {}))
        if as_ is not None:
            headers.setdefault("Authorization", f"Bearer {as_.access_token}")
        return self.client.open(path, method=method.upper(), headers=headers, **kwargs)

    def get(self, path: str, as_: TestUser | None = None, **kw: Any) -> TestResponse:
        return self.call("GET", path, as_, **kw)

    def post(self, path: str, as_: TestUser | None = None, **kw: Any) -> TestResponse:
        return self.call("POST", path, as_, **kw)

    def patch(self, path: str, as_: TestUser | None = None, **kw: Any) -> TestResponse:
        return self.call("PATCH", path, as_, **kw)

    def delete(self, path: str, as_: TestUser | None = None, **kw: Any) -> TestResponse:
        return self.call("DELETE", path, as_, **kw)


# Check-ups -----------------------------------------------------------------------------

#: A valid ``information`` for every registered check-up type.
SAMPLE_INFORMATION: dict[str, dict[str, Any]] = {
    "blood_pressure": {"systolic": 122, "diastolic": 81, "pulse": 68},
    "heart_rate": {"bpm": 72},
    "spo2": {"percent": 98.0, "pulse": 70},
    "body_temperature": {"celsius": 36.8},
    "blood_glucose": {"mg_dl": 95.5, "fasting": True},
    "body_weight": {"kg": 71.3},
    "height": {"cm": 178.0},
    "ecg": {"rhythm": "sinus", "heart_rate": 64, "qt_ms": 400},
}


def checkup_item(
    user_id: uuid.UUID,
    machine_id: uuid.UUID,
    checkup_type: str = "blood_pressure",
    **fields: Any,
) -> dict[str, Any]:
    """One valid upload item as the phone sends it (JSON-ready), with ``fields`` overriding."""
    item: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "user_id": str(user_id),
        "machine_id": str(machine_id),
        "checkup_type": checkup_type,
        "information": dict(SAMPLE_INFORMATION[checkup_type]),
        "test_taken_by": "nurse on duty",
        "taken_at": "2026-01-15T09:30:00Z",
    }
    item.update(fields)
    return item


def checkup_session(
    user_id: uuid.UUID, machine_id: uuid.UUID, count: int, *, start_minute: int = 0
) -> list[dict[str, Any]]:
    """``count`` valid items of every type in turn, one minute apart."""
    types = list(SAMPLE_INFORMATION)
    return [
        checkup_item(
            user_id,
            machine_id,
            types[i % len(types)],
            taken_at=f"2025-{1 + (m // 40320) % 12:02d}-{1 + (m // 1440) % 28:02d}"
            f"T{(m // 60) % 24:02d}:{m % 60:02d}:00Z",
        )
        for i in range(count)
        for m in [start_minute + i]
    ]


# Check-ups in bulk, straight into PostgreSQL ---------------------------------------------

#: ``information`` of each generated check-up type, from the row's position ``n``.
_INFORMATION_SQL = {
    "heart_rate": "jsonb_build_object('bpm', 50 + n % 60)",
    "blood_pressure": (
        "jsonb_build_object('systolic', 100 + n % 60, 'diastolic', 60 + n % 30, 'pulse', 70)"
    ),
    "body_temperature": "jsonb_build_object('celsius', 36 + (n % 20) / 10.0)",
    "spo2": "jsonb_build_object('percent', 90 + n % 10)",
}


def insert_checkups(
    engine: Any,
    *,
    user_id: uuid.UUID,
    machine_id: uuid.UUID,
    count: int,
    checkup_type: str = "heart_rate",
    taken_at: Any = None,
    test_taken_by: str | None = "nurse-1",
) -> list[uuid.UUID]:
    """Insert ``count`` check-ups for a user and the user's outbox row, in one transaction.

    Set-based (one INSERT ... SELECT generate_series). With ``taken_at`` every row shares
    that timestamp; otherwise they are a minute apart, the newest an hour ago.
    """
    from sqlalchemy import text

    when = (
        ":taken_at"
        if taken_at is not None
        else "now() - interval '1 hour' - n * interval '1 minute'"
    )
    with engine.begin() as conn:
        ids = (
            conn.execute(
                text(
                    "INSERT INTO checkups (id, user_id, machine_id, checkup_type, information,"  # noqa: S608
                    " test_taken_by, taken_at, uploaded_by)"
                    f" SELECT gen_random_uuid(), :user_id, :machine_id, :checkup_type,"
                    f" {_INFORMATION_SQL[checkup_type]}, :taken_by, {when}, :user_id"
                    " FROM generate_series(1, :count) AS n RETURNING id"
                ),
                {
                    "user_id": user_id,
                    "machine_id": machine_id,
                    "checkup_type": checkup_type,
                    "taken_by": test_taken_by,
                    "taken_at": taken_at,
                    "count": count,
                },
            )
            .scalars()
            .all()
        )
        enqueue_report(conn, user_id=user_id)
    return list(ids)


def delete_checkup(engine: Any, checkup_id: uuid.UUID) -> None:
    """Delete one check-up and record its user in the outbox, in one transaction."""
    from sqlalchemy import text

    with engine.begin() as conn:
        user_id = conn.execute(
            text("DELETE FROM checkups WHERE id = :id RETURNING user_id"), {"id": checkup_id}
        ).scalar_one()
        enqueue_report(conn, user_id=user_id)


def enqueue_report(conn: Any, *, user_id: uuid.UUID) -> None:
    """Record ``user_id`` in the report outbox on ``conn``'s transaction, as a writer does."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from healthapp.accounts.models import User
    from healthapp.outbox.service import record_changed_users

    with Session(bind=conn) as session:
        user = select(User.id, User.username).where(User.id == user_id)
        record_changed_users(session=session, users=user)


# Audit trail ----------------------------------------------------------------------------


def audit_events(engine: Any, **where: Any) -> list[dict[str, Any]]:
    """Stored audit events, oldest first, as dicts; ``where`` filters on equal columns."""
    from sqlalchemy import select

    from healthapp.audit.models import AuditEvent

    stmt = select(AuditEvent.__table__).order_by(AuditEvent.occurred_at, AuditEvent.id)
    for column, value in where.items():
        stmt = stmt.where(getattr(AuditEvent, column) == value)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


def synced_patient(api: ApiClient, sync: Any) -> tuple[TestUser, dict[str, Any]]:
    """A new patient with one uploaded check-up, synced so that their report is in Redis."""
    patient = api.user(Role.PATIENT)
    item = checkup_item(patient.id, api.machine())
    assert api.post("/api/v1/checkups/", as_=patient, json={"checkups": [item]}).status_code == 201
    sync()
    return patient, item


def signed_in(core: str, user: TestUser) -> TestUser:
    """``user`` with the tokens a running Core API at ``core`` gives for their password (a
    stack started with an instance of its own has a key pair of its own)."""
    import httpx

    body = {"username": user.username, "password": PASSWORD}
    response = httpx.post(f"{core}/api/v1/auth/token", json=body, timeout=30)
    assert response.status_code == 200, response.text
    tokens = response.json()
    return replace(user, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
