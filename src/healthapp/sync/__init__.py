"""The sync from PostgreSQL into the Redis report store (SPEC §8)."""
