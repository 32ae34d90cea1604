"""PostgreSQL for the Core API, the worker and the command line: the engine, the session of
an app context, and the 503 answered when the database does not answer.

Only the write side imports this module; the Reports API never opens PostgreSQL, so it loads
neither SQLAlchemy nor the driver.
"""

from __future__ import annotations

import sqlalchemy.exc
from flask import Flask, Response, current_app, g
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from healthapp.problems import REDIS_UNREACHABLE, problem_response, store_unreachable

#: What an unreachable PostgreSQL raises (a lost connection, a full pool, a cancelled
#: statement): a 503 on the Core API.
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)

#: What a store that cannot be reached raises: a 503 on the APIs, one warning line in the
#: worker and the command line (the next try may succeed), never a traceback.
STORE_UNREACHABLE: tuple[type[Exception], ...] = DATABASE_UNREACHABLE + REDIS_UNREACHABLE

#: PostgreSQL's SQLSTATE for a statement it cancelled (``statement_timeout``). Matched by
#: code: this module names no driver, and a driver's exception class would import it.
QUERY_CANCELED = "57014"

#: The driver every PostgreSQL URL is given to.
DRIVER = "postgresql+psycopg"


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg 3 driver named, whichever PostgreSQL form it was given in."""
    parsed = make_url(url)
    if parsed.drivername not in ("postgres", "postgresql", DRIVER):
        return url
    return parsed.set(drivername=DRIVER).render_as_string(hide_password=False)


def make_engine(
    url: str, *, pool_size: int = 5, timeout_seconds: int = 3, statement_timeout_seconds: int = 0
) -> Engine:
    """An engine for ``url`` that fails fast when PostgreSQL is unreachable.

    ``statement_timeout_seconds`` (0: none) makes PostgreSQL cancel a statement that runs
    longer, one waiting on a lock too, so that no statement outlives the request behind it.
    """
    options = "-c timezone=UTC"
    if statement_timeout_seconds > 0:
        options += f" -c statement_timeout={statement_timeout_seconds}s"
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # Statement parameters are request data: keep them out of exception messages.
        hide_parameters=True,
        pool_timeout=timeout_seconds,
        connect_args={
            "connect_timeout": timeout_seconds,
            "application_name": "healthapp",
            "options": options,
        },
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine`` whose objects stay readable after the commit."""
    return sessionmaker(engine, expire_on_commit=False)


class Database:
    """One engine per app and one session per app context, removed at teardown."""

    def __init__(self) -> None:
        self._sessionmakers: dict[int, sessionmaker[Session]] = {}

    def init_app(self, app: Flask, *, engine: Engine) -> None:
        app.extensions["healthapp.db"] = engine
        self._sessionmakers[id(app)] = make_session_factory(engine)
        app.teardown_appcontext(self._remove_session)

    @property
    def engine(self) -> Engine:
        engine: Engine = current_app.extensions["healthapp.db"]
        return engine

    @property
    def session(self) -> Session:
        """The current app context's session, opened on first use."""
        if "db_session" not in g:
            g.db_session = self._sessionmakers[id(current_app._get_current_object())]()  # type: ignore[attr-defined]
        session: Session = g.db_session
        return session

    @staticmethod
    def _remove_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def register_errorhandlers(app: Flask) -> None:
    """Answer an unreachable or too slow PostgreSQL with the 503 problem document."""

    def handle_database_unreachable(error: Exception) -> Response:
        if getattr(getattr(error, "orig", None), "sqlstate", None) == QUERY_CANCELED:
            app.logger.warning("database statement cancelled by STATEMENT_TIMEOUT_SECONDS")
            return problem_response(
                store_unreachable("The database did not answer in time; retry shortly.")
            )
        app.logger.warning("backing store unreachable: %s", type(error).__name__)
        return problem_response(store_unreachable())

    for error_class in DATABASE_UNREACHABLE:
        app.register_error_handler(error_class, handle_database_unreachable)


db = Database()
