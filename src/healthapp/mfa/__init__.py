"""Staff second factor: a TOTP authenticator (RFC 6238) and one-time recovery codes (SPEC §14)."""
