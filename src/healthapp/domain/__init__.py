"""The pure domain: no Flask, no database, no Redis."""
