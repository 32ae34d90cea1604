"""MyHealthApp: check-up ingest on PostgreSQL, per-user reports served from Redis."""

__version__ = "0.1.0"
