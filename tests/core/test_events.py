"""The event contract: strict parsing, deterministic encoding, producer chains."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.errors import DecodeError, InvalidEvent, InvalidProvDocument
from ledger.core.events import (
    GENESIS,
    Event,
    Producer,
    chain_hash,
    encode_event,
    parse_event,
)
from ledger.core.ids import content_id, new_event_id

EVENT_ID = "0190c8a2-7b1e-7c3d-9a4f-1b2c3d4e5f60"
PROV = {
    "prefix": {"pv": "urn:provault:"},
    "activity": {"pv:run/1": {"prov:startTime": "2026-11-23T01:55:25Z"}},
}


def event_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": EVENT_ID,
        "time": "2026-11-23T01:55:25.123456Z",
        "kind": "run.started",
        "producer": {"id": "trainer@host-7", "seq": 1, "prev": GENESIS},
        "prov": PROV,
        "data": {"run": "1", "params": {"lr": 0.001, "epochs": 3}},
    }
    for k, v in overrides.items():
        if v is _DELETE:
            doc.pop(k)
        else:
            doc[k] = v
    return doc


_DELETE = object()


def payload(**overrides: Any) -> bytes:
    return json.dumps(event_doc(**overrides)).encode()


def producer(**overrides: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"id": "trainer@host-7", "seq": 1, "prev": GENESIS}
    for k, v in overrides.items():
        if v is _DELETE:
            p.pop(k)
        else:
            p[k] = v
    return p


# --- happy path ------------------------------------------------------------------------


def test_parse_valid_event() -> None:
    e = parse_event(payload())
    assert e.id == EVENT_ID
    assert e.time == datetime(2026, 11, 23, 1, 55, 25, 123456, tzinfo=UTC)
    assert e.kind == "run.started"
    assert e.producer == Producer(id="trainer@host-7", seq=1, prev=GENESIS)
    assert e.prov["activity"]["pv:run/1"]["prov:startTime"] == "2026-11-23T01:55:25Z"
    assert e.data is not None and e.data["params"]["epochs"] == 3


def test_data_is_optional() -> None:
    assert parse_event(payload(data=_DELETE)).data is None


def test_encode_is_deterministic_compact_sorted_utf8() -> None:
    e = parse_event(payload(data={"z": 1, "a": "d\u00e9j\u00e0 vu"}))
    raw = encode_event(e)
    assert raw.startswith(b'{"data":{"a":"d\xc3\xa9j\xc3\xa0 vu","z":1},"id":')
    assert b" vu" in raw and b", " not in raw and b": " not in raw
    reordered = json.dumps(dict(reversed(list(event_doc(data={"z": 1, "a": "d\u00e9j\u00e0 vu"}).items()))))
    assert encode_event(parse_event(reordered.encode())) == raw
    assert parse_event(raw) == e


def test_time_is_encoded_with_six_fraction_digits() -> None:
    e = parse_event(payload(time="2026-11-23T01:55:25Z"))
    assert b'"time":"2026-11-23T01:55:25.000000Z"' in encode_event(e)
    assert parse_event(payload(time="2026-11-23T01:55:25.5Z")).time.microsecond == 500000


def test_event_is_deeply_read_only() -> None:
    e = parse_event(payload(data={"xs": [1, {"y": 2}]}))
    assert e.data is not None
    with pytest.raises(TypeError):
        e.data["xs"] = 1  # type: ignore[index]
    assert e.data["xs"] == (1, {"y": 2})
    with pytest.raises(TypeError):
        e.prov["activity"]["new"] = {}  # type: ignore[index]
    assert hash(e) == hash(parse_event(payload(data={"other": True})))


def test_constructed_event_round_trips() -> None:
    e = Event(
        id=new_event_id(),
        time=datetime.now(UTC),
        kind="model.registered",
        producer=Producer.first("registry/ci"),
        prov=PROV,
        data={"artifact": content_id(b"weights")},
    )
    assert parse_event(encode_event(e)) == e


def test_constructed_event_time_must_be_utc() -> None:
    kwargs = dict(id=EVENT_ID, kind="run.started", producer=Producer.first("p"), prov=PROV)
    with pytest.raises(InvalidEvent, match="aware datetime in UTC") as e:
        Event(time=datetime(2026, 1, 1), **kwargs)  # type: ignore[arg-type]
    assert e.value.field == "time"
    with pytest.raises(InvalidEvent, match="aware datetime in UTC"):
        Event(time=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))), **kwargs)  # type: ignore[arg-type]
    same = Event(time=datetime(2026, 1, 1, tzinfo=timezone(timedelta(0))), **kwargs)  # type: ignore[arg-type]
    assert same.time.tzinfo is UTC


def test_constructed_event_refuses_non_json_data() -> None:
    with pytest.raises(InvalidEvent, match="expected a JSON value, found set") as e:
        Event(id=EVENT_ID, time=datetime.now(UTC), kind="a.b", producer=Producer.first("p"), prov={}, data={"s": {1}})
    assert e.value.field == "$.data.s"


# --- producer chain --------------------------------------------------------------------


def test_chain_hash_links_exact_payload_bytes() -> None:
    first = Event(
        id=new_event_id(), time=datetime.now(UTC), kind="run.started", producer=Producer.first("p"), prov=PROV
    )
    raw = encode_event(first)
    nxt = first.producer.next(raw)
    assert nxt == Producer(id="p", seq=2, prev=chain_hash(raw))
    assert chain_hash(raw) == content_id(raw)
    assert chain_hash(raw + b" ") != chain_hash(raw)


def test_genesis_is_sha256_of_nothing_in_particular() -> None:
    assert GENESIS == "sha256:" + "0" * 64


# --- one test per violation ------------------------------------------------------------------

_BIG = 1 << 63


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (b"\xff{}", "payload", "not valid UTF-8"),
        (b"{", "payload", "not JSON"),
        (b"\xef\xbb\xbf{}", "payload", "not JSON"),
        (b"[1]", "event", "expected a JSON object, found array"),
        (b'{"id":1,"id":2}', "payload", "'id' appears more than once"),
        (payload(data={"a": 1}).replace(b'"a": 1', b'"a": 1, "a": 2'), "payload", "'a' appears more than once"),
        (payload(data={"a": 1}).replace(b'"a": 1', b'"a": NaN'), "payload", "found NaN"),
        (payload(data={"a": 1}).replace(b'"a": 1', b'"a": -Infinity'), "payload", "found -Infinity"),
        (payload(data={"a": 1}).replace(b'"a": 1', b'"a": 1e999'), "payload", "expected a finite number"),
        (payload(data={"a": 1}).replace(b'"a": 1', b'"a": ' + b"9" * 5000), "payload", "cannot be decoded"),
        (payload(data={"a": "\ud800"}), "$.data.a", "unpaired UTF-16 surrogate"),
        (
            payload(data={"a": 1}).replace(b'"a": 1', b'"a": ' + b"[" * 80 + b"]" * 80),
            "$.data.a" + "[0]" * 64,
            "nesting",
        ),
        (payload(extra=1), "event.extra", "unknown member 'extra'"),
        (payload(id=_DELETE), "event.id", "required member 'id' is missing"),
        (payload(time=_DELETE), "event.time", "required member 'time' is missing"),
        (payload(kind=_DELETE), "event.kind", "required member 'kind' is missing"),
        (payload(producer=_DELETE), "event.producer", "required member 'producer' is missing"),
        (payload(prov=_DELETE), "event.prov", "required member 'prov' is missing"),
        (payload(id=123), "id", "expected a JSON string, found number"),
        (payload(id=EVENT_ID.upper()), "id", "canonical lowercase"),
        (payload(id="0190c8a2-7b1e-4c3d-9a4f-1b2c3d4e5f60"), "id", "expected 7, found 4"),
        (payload(id="0190c8a2-7b1e-7c3d-0a4f-1b2c3d4e5f60"), "id", "variant"),
        (payload(time=1700000000), "time", "expected a JSON string, found number"),
        (payload(time="23/11/2026 01:55"), "time", "RFC 3339"),
        (payload(time="2026-11-23 01:55:25Z"), "time", "RFC 3339"),
        (payload(time="2026-11-23T01:55:25+00:00"), "time", "UTC written with 'T' and a 'Z' suffix"),
        (payload(time="2026-11-23T03:55:25+02:00"), "time", "'Z' suffix"),
        (payload(time="2026-11-23t01:55:25z"), "time", "'Z' suffix"),
        (payload(time="2026-11-23T01:55:25.1234567Z"), "time", "at most 6 digits"),
        (payload(time="2026-02-30T01:55:25Z"), "time", "not a valid calendar date"),
        (payload(time="2026-12-31T23:59:60Z"), "time", "not a valid calendar date"),
        (payload(kind=7), "kind", "expected a string, found number"),
        (payload(kind="started"), "kind", "dotted lowercase name"),
        (payload(kind="Run.Started"), "kind", "dotted lowercase name"),
        (payload(kind="run..started"), "kind", "dotted lowercase name"),
        (payload(kind="run.started." + "x" * 130), "kind", "at most 128"),
        (payload(producer="trainer"), "producer", "expected a JSON object, found string"),
        (payload(producer=producer(extra=1)), "producer.extra", "unknown member 'extra'"),
        (payload(producer=producer(id=_DELETE)), "producer.id", "required member 'id' is missing"),
        (payload(producer=producer(seq=_DELETE)), "producer.seq", "required member 'seq' is missing"),
        (payload(producer=producer(prev=_DELETE)), "producer.prev", "required member 'prev' is missing"),
        (payload(producer=producer(id="")), "producer.id", "non-empty"),
        (payload(producer=producer(id="a" * 257)), "producer.id", "at most 256"),
        (payload(producer=producer(id="trainer host")), "producer.id", "characters A-Z"),
        (payload(producer=producer(id=5)), "producer.id", "expected a string, found number"),
        (payload(producer=producer(seq=True)), "producer.seq", "expected an integer, found boolean"),
        (payload(producer=producer(seq=1.0)), "producer.seq", "expected an integer, found number 1.0"),
        (payload(producer=producer(seq="1")), "producer.seq", "expected an integer, found string"),
        (payload(producer=producer(seq=0)), "producer.seq", "from 1 to 2^63-1"),
        (payload(producer=producer(seq=_BIG)), "producer.seq", "from 1 to 2^63-1"),
        (payload(producer=producer(prev="0" * 64)), "producer.prev", "prefix 'sha256:'"),
        (payload(producer=producer(prev="sha256:" + "F" * 64)), "producer.prev", "lowercase hex"),
        (payload(producer=producer(prev=None)), "producer.prev", "expected a string"),
        (payload(producer=producer(prev=content_id(b"x"))), "producer.prev", "of seq 1: expected GENESIS"),
        (payload(producer=producer(seq=2)), "producer.prev", "of seq 2: expected the chain hash"),
        (payload(prov=[]), "prov", "expected a PROV-JSON object, found array"),
        (payload(prov={"bundle": {}}), "$.prov.bundle", "bundles are not supported"),
        (payload(data=None), "data", "expected a JSON object, found null"),
        (payload(data=[1]), "data", "expected a JSON object, found array"),
    ],
)
def test_parse_rejects(raw: bytes, field: str, fragment: str) -> None:
    with pytest.raises(InvalidEvent) as e:
        parse_event(raw)
    assert fragment in str(e.value)
    assert e.value.field == field


def test_invalid_prov_is_an_invalid_prov_document() -> None:
    with pytest.raises(InvalidProvDocument) as e:
        parse_event(payload(prov={"used": {"_:u": {"prov:entity": "pv:x"}}, "prefix": {"pv": "urn:pv:"}}))
    assert e.value.field == "$.prov.used['_:u']"
    assert "used requires prov:activity" in str(e.value)


def test_parse_rejects_oversized_payload() -> None:
    raw = payload()
    with pytest.raises(InvalidEvent, match=f"expected at most 64 bytes, found {len(raw)} bytes") as e:
        parse_event(raw, max_size=64)
    assert e.value.field == "payload"
    parse_event(raw, max_size=len(raw))


def test_parse_rejects_non_bytes() -> None:
    with pytest.raises(InvalidEvent, match="expected bytes, found str"):
        parse_event(payload().decode())  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------------------


def _TEXT(**kw):
    return st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), **kw
    )  # lone surrogates are refused too


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT(max_size=6), inner, max_size=4),
    max_leaves=16,
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    seq = draw(st.integers(1, 2**63 - 1))
    prev = GENESIS if seq == 1 else content_id(draw(st.binary(max_size=8)))
    when = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)))
    return Event(
        id=new_event_id(),
        time=when,
        kind=draw(st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){1,3}", fullmatch=True)),
        producer=Producer(id=draw(st.from_regex(r"[A-Za-z0-9._:/@-]{1,40}", fullmatch=True)), seq=seq, prev=prev),
        prov=PROV,
        data=draw(st.none() | st.dictionaries(_TEXT(max_size=8), _JSON, max_size=4)),
    )


@settings(max_examples=150, deadline=None)
@given(events())
def test_round_trip(e: Event) -> None:
    raw = encode_event(e)
    assert parse_event(raw) == e
    assert encode_event(parse_event(raw)) == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_decode_errors(raw: bytes) -> None:
    try:
        parse_event(raw)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "time", "kind", "producer", "prov", "data"]),
        _JSON | st.sampled_from([EVENT_ID, "2026-11-23T01:55:25Z", "run.started", producer(), PROV]),
        max_size=6,
    )
)
def test_arbitrary_json_objects_raise_only_decode_errors(doc: dict[str, Any]) -> None:
    try:
        parse_event(json.dumps(doc).encode())
    except DecodeError:
        pass
