"""The Reports API: the read side, serving report documents from Redis only (SPEC §7)."""
