"""The instruments that take check-ups."""
