"""Sessions: signing in with a password and refreshing the tokens it gives (SPEC §4)."""
