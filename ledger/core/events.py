"""The event contract: the signed payload of every envelope (DESIGN contract 1).

An event is one UTF-8 JSON object with exactly these members::

    {"id": "<UUIDv7>", "time": "2026-11-23T01:55:25.123456Z", "kind": "run.started",
     "producer": {"id": "trainer@host-7", "seq": 12, "prev": "sha256:<hex>"},
     "prov": {<PROV-JSON document>}, "data": {<kind-specific, optional>}}

``producer.seq`` counts a producer's events from 1 and ``producer.prev`` is
the :func:`chain_hash` of the producer's previous payload bytes (``GENESIS``
for seq 1), so the ledger can prove a producer's stream has no gaps and was
not reordered.  Every violation raises one :class:`InvalidEvent` whose
``field`` names the offending member.

:func:`encode_event` writes deterministic bytes (sorted keys, no spaces,
UTF-8, times with six fractional digits) so a producer's payloads, and hence
its chain, are stable.  Verification never depends on it: the ledger hashes
and verifies the exact bytes it received.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from .errors import InvalidEvent, InvalidIdentifier, expected_found
from .ids import content_id, parse_content_id, parse_uuid7
from .provjson import json_type as _json_type
from .provjson import validate_prov

GENESIS = "sha256:" + "0" * 64
MAX_EVENT_SIZE = 1 << 20  # 1 MiB; the envelope's base64 is bounded separately
MAX_SEQ = (1 << 63) - 1  # fits a PostgreSQL bigint
MAX_DEPTH = 64  # JSON nesting inside prov / data
MAX_KIND_LENGTH = 128
MAX_PRODUCER_ID_LENGTH = 256

MEMBERS = ("id", "time", "kind", "producer", "prov", "data")
REQUIRED_MEMBERS = ("id", "time", "kind", "producer", "prov")
PRODUCER_MEMBERS = ("id", "seq", "prev")

_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_PRODUCER_ID = re.compile(r"[A-Za-z0-9._:/@-]+")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


def chain_hash(payload: bytes) -> str:
    """The ``producer.prev`` of the event after the one whose exact payload bytes are given."""
    return content_id(payload)


# --- JSON helpers -------------------------------------------------------------------


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    """Refuse anything that would not encode back to the same JSON text."""
    if depth > MAX_DEPTH:
        raise InvalidEvent(expected_found(f"{path} nesting", f"at most {MAX_DEPTH} levels", "deeper"), field=path)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEvent(
                f"{path}: string contains a NUL character (U+0000)",
                field=path,
                hint="the ledger stores text in PostgreSQL, which cannot hold U+0000; remove or escape it",
            )
        if not value.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise InvalidEvent(f"{path}: string contains an unpaired UTF-16 surrogate escape", field=path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(expected_found(path, "a finite number", value), field=path)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidEvent(expected_found(f"{path} member name", "a string", _json_type(k)), field=path)
            _check_json(k, path, depth + 1)
            _check_json(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, (bool, int)):
        raise InvalidEvent(expected_found(path, "a JSON value", type(value).__name__), field=path)


def _json_ok(value: Any, depth: int = 0) -> bool:
    """Fast pass of :func:`_check_json` over decoded JSON (exact types, no paths).

    When it says no, :func:`_check_json` runs to find and name the problem.
    """
    if depth > MAX_DEPTH:
        return False
    t = type(value)
    if t is str:
        return "\x00" not in value and (value.isascii() or _encodable(value))
    if t is dict:
        return all(type(k) is str and _json_ok(k, depth + 1) and _json_ok(v, depth + 1) for k, v in value.items())
    if t is list:
        return all(_json_ok(v, depth + 1) for v in value)
    if t is float:
        return math.isfinite(value)
    return t is int or t is bool or value is None


def _encodable(text: str) -> bool:
    """No unpaired surrogate (UTF-8 refuses exactly those), checked at C speed: a large text is one call."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _freeze(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if t is list:
        return tuple(_freeze(v) for v in value)
    if t in (str, int, float, bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# --- member checks --------------------------------------------------------------------


def _check_id(value: Any) -> str:
    try:
        return str(parse_uuid7(value))
    except InvalidIdentifier as e:
        raise InvalidEvent(f"id: {e.message}", field="id", hint=e.hint) from None


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp ending in ``Z`` into an aware datetime."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise InvalidEvent(
            expected_found("time", "RFC 3339 like 2026-11-23T01:55:25.123456Z", repr(text[:64])), field="time"
        )
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    if offset != "Z" or "t" in text:
        raise InvalidEvent(
            expected_found("time", "UTC written with 'T' and a 'Z' suffix", repr(text[:64])),
            field="time",
            hint="convert to UTC before emitting: datetime.now(UTC)",
        )
    if fraction is not None and len(fraction) > 6:
        raise InvalidEvent(
            expected_found("time fraction", "at most 6 digits (microseconds)", len(fraction)), field="time"
        )
    try:
        micro = int((fraction or "0").ljust(6, "0"))
        parts = (int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
        return datetime(*parts, tzinfo=UTC)
    except ValueError as e:
        raise InvalidEvent(f"time: {text!r} is not a valid calendar date and time ({e})", field="time") from None


def format_time(t: datetime) -> str:
    """The canonical text of an event time: UTC, six fractional digits, ``Z``."""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"


def _check_time(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidEvent(expected_found("time", "a datetime", type(value).__name__), field="time")
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise InvalidEvent(
            expected_found("time", "an aware datetime in UTC", value.isoformat()),
            field="time",
            hint="use datetime.now(UTC) or .astimezone(UTC)",
        )
    return value.replace(tzinfo=UTC)


def _check_kind(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(expected_found("kind", "a string", _json_type(value)), field="kind")
    if len(value) > MAX_KIND_LENGTH or not _KIND.fullmatch(value):
        raise InvalidEvent(
            expected_found(
                "kind", f"a dotted lowercase name like run.started (at most {MAX_KIND_LENGTH} chars)", repr(value[:140])
            ),
            field="kind",
            hint="see docs/events.md for the kinds",
        )
    return value


def check_producer_id(value: Any) -> str:
    """A valid producer id (InvalidEvent naming ``producer.id`` otherwise); shared with the NATS users registry."""
    f = "producer.id"
    if not isinstance(value, str):
        raise InvalidEvent(expected_found(f, "a string", _json_type(value)), field=f)
    if not value:
        raise InvalidEvent(expected_found(f, "a non-empty string", "an empty one"), field=f)
    if len(value) > MAX_PRODUCER_ID_LENGTH:
        raise InvalidEvent(expected_found(f"{f} length", f"at most {MAX_PRODUCER_ID_LENGTH}", len(value)), field=f)
    if not _PRODUCER_ID.fullmatch(value):
        raise InvalidEvent(expected_found(f, "characters A-Z a-z 0-9 . _ : / @ -", repr(value[:80])), field=f)
    return value


def _check_seq(value: Any) -> int:
    f = "producer.seq"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(expected_found(f, "an integer", f"{_json_type(value)} {value!r}"[:80]), field=f)
    if not 1 <= value <= MAX_SEQ:
        raise InvalidEvent(expected_found(f, "an integer from 1 to 2^63-1", value), field=f)
    return value


def _check_prev(value: Any, seq: int) -> str:
    f = "producer.prev"
    try:
        parse_content_id(value)
    except InvalidIdentifier as e:
        raise InvalidEvent(f"{f}: {e.message}", field=f, hint=e.hint) from None
    if seq == 1 and value != GENESIS:
        raise InvalidEvent(expected_found(f"{f} of seq 1", "GENESIS (sha256: and 64 zeros)", value), field=f)
    if seq > 1 and value == GENESIS:
        raise InvalidEvent(
            expected_found(f"{f} of seq {seq}", "the chain hash of the previous payload", "GENESIS"),
            field=f,
            hint="prev is sha256 of the exact bytes of the producer's previous event",
        )
    return value


def _check_prov(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(expected_found("prov", "a PROV-JSON object", _json_type(value)), field="prov")
    if not _json_ok(value):
        _check_json(value, "$.prov")
    validate_prov(value, path="$.prov")
    return _freeze(value)


def _check_data(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEvent(expected_found("data", "a JSON object", _json_type(value)), field="data")
    if not _json_ok(value):
        _check_json(value, "$.data")
    return _freeze(value)


# --- data types ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Producer:
    """Who emitted an event and where it sits in that producer's hash chain."""

    id: str
    seq: int
    prev: str

    def __post_init__(self) -> None:
        check_producer_id(self.id)
        _check_prev(self.prev, _check_seq(self.seq))

    @classmethod
    def first(cls, producer_id: str) -> Producer:
        return cls(id=producer_id, seq=1, prev=GENESIS)

    def next(self, payload: bytes) -> Producer:
        """The producer position after emitting ``payload`` (its exact bytes)."""
        return Producer(id=self.id, seq=self.seq + 1, prev=chain_hash(payload))


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One validated event.

    ``prov`` and ``data`` are deep-frozen on construction: objects become
    read-only ``MappingProxyType`` views and arrays become tuples, so an event
    cannot change after it was checked (or signed).  They take no part in
    ``hash()``; use ``id`` as the key.
    """

    id: str
    time: datetime
    kind: str
    producer: Producer
    prov: Mapping[str, Any] = field(hash=False)
    data: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", _check_id(self.id))
        object.__setattr__(self, "time", _check_time(self.time))
        _check_kind(self.kind)
        if not isinstance(self.producer, Producer):
            raise InvalidEvent(expected_found("producer", "a Producer", type(self.producer).__name__), field="producer")
        object.__setattr__(self, "prov", _check_prov(self.prov))
        object.__setattr__(self, "data", _check_data(self.data))


# --- decoding and encoding ----------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [k for k, _ in pairs]
        dup = next(k for k in names if names.count(k) > 1)
        raise InvalidEvent(f"payload: JSON member name {dup!r} appears more than once", field="payload")
    return obj


def _reject_constant(name: str) -> Any:
    raise InvalidEvent(expected_found("payload number", "a finite JSON number", name), field="payload")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidEvent(expected_found("payload number", "a finite number", text[:40]), field="payload")
    return value


def _load(payload: bytes, max_size: int) -> Any:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise InvalidEvent(expected_found("payload", "bytes", type(payload).__name__), field="payload")
    if len(payload) > max_size:
        raise InvalidEvent(
            expected_found("payload size", f"at most {max_size} bytes", f"{len(payload)} bytes"),
            field="payload",
            hint="split large batches into several events",
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidEvent(f"payload is not valid UTF-8 (byte {e.start})", field="payload") from None
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as e:
        raise InvalidEvent(
            f"payload is not JSON: {e.msg} at line {e.lineno} column {e.colno}", field="payload"
        ) from None
    except (ValueError, RecursionError) as e:  # over-long integers, absurd nesting
        raise InvalidEvent(f"payload JSON cannot be decoded: {type(e).__name__}", field="payload") from None


def _members(obj: Any, allowed: tuple[str, ...], required: tuple[str, ...], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidEvent(expected_found(where, "a JSON object", _json_type(obj)), field=where)
    for name in obj:
        if name not in allowed:
            raise InvalidEvent(
                f"{where}: unknown member {name!r}", field=f"{where}.{name}", hint=f"members are {', '.join(allowed)}"
            )
    for name in required:
        if name not in obj:
            raise InvalidEvent(f"{where}: required member {name!r} is missing", field=f"{where}.{name}")
    return obj


def _producer_from_json(value: Any) -> Producer:
    obj = _members(value, PRODUCER_MEMBERS, PRODUCER_MEMBERS, "producer")
    return Producer(id=obj["id"], seq=obj["seq"], prev=obj["prev"])


def _string(obj: Mapping[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidEvent(expected_found(name, "a JSON string", _json_type(value)), field=name)
    return value


def parse_event(payload: bytes, *, max_size: int = MAX_EVENT_SIZE) -> Event:
    """Parse and validate exact payload bytes; raise one InvalidEvent for the first violation."""
    obj = _members(_load(payload, max_size), MEMBERS, REQUIRED_MEMBERS, "event")
    event_id = _string(obj, "id")
    _check_id(event_id)
    time = parse_time(_string(obj, "time"))
    _check_kind(obj["kind"])
    if "data" in obj and obj["data"] is None:
        raise InvalidEvent(expected_found("data", "a JSON object", "null"), field="data", hint="omit data instead")
    return Event(
        id=event_id,
        time=time,
        kind=obj["kind"],
        producer=_producer_from_json(obj["producer"]),
        prov=obj["prov"],
        data=obj.get("data"),
    )


def event_to_json(event: Event) -> dict[str, Any]:
    """The event as plain JSON-ready Python values."""
    doc: dict[str, Any] = {
        "id": event.id,
        "time": format_time(event.time),
        "kind": event.kind,
        "producer": {"id": event.producer.id, "seq": event.producer.seq, "prev": event.producer.prev},
        "prov": _thaw(event.prov),
    }
    if event.data is not None:
        doc["data"] = _thaw(event.data)
    return doc


def encode_event(event: Event) -> bytes:
    """Deterministic compact UTF-8 JSON: sorted keys, no spaces, non-ASCII kept as is."""
    text = json.dumps(event_to_json(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")
