"""Which ``Accept-Encoding`` headers admit a gzip body (RFC 9110 §12.5.3), as Werkzeug
parses them."""

from __future__ import annotations

import pytest

from healthapp.webapp import _accepts_gzip, accepts_gzip


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
        ("*;q=0.5, gzip;q=0", False),  # the coding named beats the wildcard, in any order
        ("gzip;q=1.5", False),  # a weight past 1 is not a weight
        (" gzip ", True),
        ("deflate;q=0.9,GZip;Q=0.2", True),
    ],
)
def test_accepts_gzip(header, expected):
    assert accepts_gzip(header) is expected


def test_each_header_value_is_parsed_once():
    _accepts_gzip.cache_clear()
    for _ in range(3):
        assert accepts_gzip("br, gzip;q=0.5")
    info = _accepts_gzip.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    assert info.maxsize is not None  # bounded: a client cannot grow it without end
