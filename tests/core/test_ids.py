"""UUIDv7 event ids and sha256 content ids."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.errors import InvalidIdentifier
from ledger.core.ids import (
    Sha256Digester,
    Uuid7Generator,
    content_id,
    is_content_id,
    new_event_id,
    parse_content_id,
    parse_uuid7,
    uuid7_time,
)

# --- UUIDv7 -----------------------------------------------------------------


def test_new_event_id_is_canonical_version_7() -> None:
    text = new_event_id()
    u = parse_uuid7(text)
    assert str(u) == text
    assert u.version == 7
    assert u.variant == uuid.RFC_4122


def test_new_event_ids_strictly_increase() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_monotonic_when_clock_stands_still_or_goes_back() -> None:
    times = iter([1000, 1000, 1000, 999, 998, 1001])
    gen = Uuid7Generator(clock_ms=lambda: next(times))
    ids = [gen.next() for _ in range(6)]
    assert [u.int for u in ids] == sorted(u.int for u in ids)
    assert len({u.int for u in ids}) == 6
    assert [u.int >> 80 for u in ids] == [1000, 1000, 1000, 1000, 1000, 1001]


def test_counter_overflow_carries_into_timestamp() -> None:
    gen = Uuid7Generator(clock_ms=lambda: 5)
    first = gen.next()
    gen._tail = (1 << 74) - 1
    second, third = gen.next(), gen.next()
    assert first.int < second.int < third.int
    assert [second.int >> 80, third.int >> 80] == [6, 6]


def test_uuid7_time_matches_generation_clock() -> None:
    gen = Uuid7Generator(clock_ms=lambda: 1_790_000_000_123)
    assert uuid7_time(gen.next()) == datetime(2026, 9, 21, 14, 13, 20, 123000, tzinfo=UTC)


def test_rfc9562_example_uuid7_time() -> None:
    # RFC 9562 Appendix A.6: 017F22E2-79B0-7CC3-98C4-DC0C0C07398F, Tuesday 2022-02-22 14:22:22 -05:00.
    assert uuid7_time("017f22e2-79b0-7cc3-98c4-dc0c0c07398f") == datetime(2022, 2, 22, 19, 22, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("017F22E2-79B0-7CC3-98C4-DC0C0C07398F", "canonical lowercase"),
        ("{017f22e2-79b0-7cc3-98c4-dc0c0c07398f}", "canonical lowercase"),
        ("017f22e279b07cc398c4dc0c0c07398f", "canonical lowercase"),
        ("urn:uuid:017f22e2-79b0-7cc3-98c4-dc0c0c07398f", "canonical lowercase"),
        ("017f22e2-79b0-4cc3-98c4-dc0c0c07398f", "expected 7, found 4"),
        ("017f22e2-79b0-7cc3-c8c4-dc0c0c07398f", "variant"),
        ("", "canonical lowercase"),
    ],
)
def test_parse_uuid7_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier, match=fragment):
        parse_uuid7(text)


def test_parse_uuid7_rejects_non_string() -> None:
    with pytest.raises(InvalidIdentifier, match="expected a string, found int"):
        parse_uuid7(7)


# --- content ids -------------------------------------------------------------


def test_content_id_known_answer() -> None:
    assert content_id(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert content_id(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@given(st.binary(max_size=256))
def test_content_id_round_trip(data: bytes) -> None:
    cid = content_id(data)
    assert is_content_id(cid)
    assert parse_content_id(cid) == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sha512:" + "0" * 64, "prefix 'sha256:'"),
        ("SHA256:" + "0" * 64, "prefix 'sha256:'"),
        ("0" * 64, "prefix 'sha256:'"),
        ("sha256:" + "0" * 63, "expected 64 hex digits, found 63"),
        ("sha256:" + "A" * 64, "lowercase hex"),
        ("sha256:" + "g" * 64, "lowercase hex"),
    ],
)
def test_parse_content_id_rejects(text: str, fragment: str) -> None:
    assert not is_content_id(text)
    with pytest.raises(InvalidIdentifier, match=fragment):
        parse_content_id(text)


def test_parse_content_id_rejects_non_string() -> None:
    assert not is_content_id(None)
    with pytest.raises(InvalidIdentifier, match="expected a string"):
        parse_content_id(b"sha256:" + b"0" * 64)


def test_digester_streams_to_the_same_id() -> None:
    data = bytes(range(256)) * 1000
    d = Sha256Digester()
    for i in range(0, len(data), 4096):
        d.update(data[i : i + 4096])
    assert d.content_id() == content_id(data)
    assert d.hexdigest() == hashlib.sha256(data).hexdigest()
    streamed = Sha256Digester().update_from(io.BytesIO(data), chunk_size=1000)
    assert streamed.content_id() == content_id(data)
    assert streamed.digest() == hashlib.sha256(data).digest()
