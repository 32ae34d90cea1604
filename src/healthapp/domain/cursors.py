"""Opaque keyset cursors (SPEC §3): the position a page ends at, as URL-safe text."""

from __future__ import annotations

import base64
from typing import Any

import orjson


def encode_cursor(key: list[Any]) -> str:
    """The opaque cursor for the keyset position ``key``."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")
