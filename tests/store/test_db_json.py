"""JSON through ``ledger.core.fastjson`` and provault's connections: fast, and exact for every value jsonb holds."""

from __future__ import annotations

import json

import pytest

from ledger.core import fastjson
from ledger.db import connect

VALUES = [
    {"a": 1, "b": [1.5, True, None, "é", "\U0001f600"], "c": {"d": 2.5e-10}},
    {"big": 123456789012345678901234567890, "neg": -98765432109876543210},
    {"max64": 9223372036854775807, "min64": -9223372036854775808, "float": 0.1 + 0.2},
    {"digits in text": "1234567890123456789012345", "after a colon": "sha256:1234567890123456789012345"},
    [12345678901234567890123, 1],
    123456789012345678901234567890,
    [],
    "plain",
]


@pytest.mark.parametrize("value", VALUES)
def test_decoding_and_encoding_are_the_standard_librarys(value) -> None:
    for text in (json.dumps(value), json.dumps(value, separators=(",", ":"))):
        assert fastjson.loads(text.encode()) == json.loads(text) and fastjson.loads(text) == json.loads(text)
        assert json.loads(fastjson.dumps(value)) == value
    assert type(fastjson.loads(b'{"n": 123456789012345678901}')["n"]) is int  # never a float
    assert type(fastjson.loads(b"123456789012345678901")) is int


@pytest.mark.postgres
def test_a_connection_reads_jsonb_exactly(pg_dsn: str) -> None:
    with connect(pg_dsn, autocommit=True) as c:
        for value in VALUES:
            (back,) = c.execute("SELECT %s::jsonb", (json.dumps(value),)).fetchone()
            assert back == value and json.dumps(back, sort_keys=True) == json.dumps(value, sort_keys=True)
