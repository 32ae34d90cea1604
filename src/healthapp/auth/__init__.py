"""Passwords, tokens and who may do what."""
