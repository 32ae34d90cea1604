"""The Core API's route table, read once at collection time to parametrise tests.

The app is built only to read its routes; its database is never contacted. Tests that walk
every route (the role matrix, the bad-input checks) take their cases from here, so a route
added to the Core API is covered without editing them.
"""

from __future__ import annotations

from typing import Any

from healthapp import config
from healthapp.app import create_app
from tests import role_matrix

#: The path argument that names a user in the Core API: callers fill in their own id.
OWNER_ARGUMENT = "user_id"


def core_route_table_app() -> Any:
    """A Core API for reading its route table (the database URL is never used)."""
    settings = config.Testing()
    settings.DATABASE_URL = "postgresql://route-table.invalid/unused"
    settings.REDIS_URL = None
    return create_app(settings)


CORE_CASES = role_matrix.route_cases_of(core_route_table_app)
