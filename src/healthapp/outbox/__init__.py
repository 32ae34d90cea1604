"""The report outbox: which users' report documents must be rebuilt (SPEC §8)."""
