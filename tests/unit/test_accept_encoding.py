"""Which ``Accept-Encoding`` headers admit a gzip body (RFC 9110 §12.5.3)."""

from __future__ import annotations

import pytest

from healthapp.webapp import accepts_gzip


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("gzip, deflate, br", True),
        ("br, gzip;q=0.5", True),
        ("gzip ; q=0.001", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *", False),
        ("*", True),
        ("*;q=0", False),
        ("*;q=0, gzip", True),
        ("identity", False),
        ("deflate, br", False),
        ("gzip;q=abc", False),
        ("gzipped", False),
    ],
)
def test_accepts_gzip(header, expected):
    assert accepts_gzip(header) is expected
