"""The sync worker's entry point: ``celery -A healthapp.worker worker -B``.

Configured only from the environment (``REDIS_URL`` is the broker and the beat store,
``DATABASE_URL`` the source, ``SYNC_INTERVAL_SECONDS`` the schedule).
"""

from __future__ import annotations

from healthapp.sync.celery_app import create_celery

app = create_celery()
