"""The projector's fast reading of admitted entries gives exactly the rows (or the error) of the strict one.

``map_admitted`` decodes with orjson and skips the checks admission already
made; ``map_entry`` parses strictly.  For every entry the two must agree,
type for type (1 is not 1.0 or True, a list is not a string), on the story,
the ProvToolbox corpus, key events, and every kind of unusual prediction batch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from ledger.core.errors import DecodeError
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, KeyRevocation
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from query._mapping import EntryRows, UnprojectableEntry, map_admitted, map_entry
from tests.core.test_provjson_forms import _corpus
from tests.query.provstory import Ids, at, build_story, predictions_logged, xsd_time
from tests.query.test_mapping import server_key_registration


def typed(value: Any) -> Any:
    """A value with every type spelled out, so equality cannot confuse 1, 1.0 and True or a tuple and a list."""
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((k, typed(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(typed(v) for v in value))
    if isinstance(value, datetime):
        return ("time", value.isoformat(), str(value.tzinfo))
    return (type(value).__name__, value)


def spelled(rows: EntryRows) -> Any:
    return (
        rows.seq,
        rows.kind,
        tuple((n.id, n.iri, n.node_type, typed(n.attributes)) for n in rows.nodes),
        tuple((e.ordinal, e.relation, e.src, e.dst, e.stmt_id, e.origin, typed(e.attributes)) for e in rows.edges),
        tuple((p.id, p.activity, typed(p.time), typed(p.input), typed(p.output)) for p in rows.predictions),
    )


def outcome(fn: Any, sealed: Sealed, *, event_id: str | None = None, kind: str | None = None) -> Any:
    try:
        return spelled(fn(sealed.envelope, 7, event_id=event_id or sealed.event_id, kind=kind or sealed.event.kind))
    except DecodeError as e:
        return (type(e).__name__, e.reason, e.message)


def same(sealed: Sealed, **row: str) -> Any:
    strict = outcome(map_entry, sealed, **row)
    assert outcome(map_admitted, sealed, **row) == strict
    stored = functools.partial(map_admitted, payload=sealed.payload)  # the payload as the ledger stores it
    assert outcome(stored, sealed, **row) == strict
    return strict


def chain() -> ProducerChain:
    return ProducerChain("test@host", Ed25519Signer.generate())


def test_the_story_maps_the_same_both_ways() -> None:
    for sealed in build_story().events:
        assert isinstance(same(sealed)[0], int)


def test_the_provtoolbox_corpus_maps_the_same_both_ways() -> None:
    c, compared = chain(), 0
    for path in _corpus():
        doc = json.loads(path.read_text(encoding="utf-8"))
        try:
            sealed = c.emit("dataset.registered", doc)
        except DecodeError:  # refused by the event contract: never admitted, never projected
            continue
        same(sealed)
        compared += 1
    assert compared > 350


def test_key_events_map_the_same_both_ways() -> None:
    admin, key = chain(), Ed25519Signer.generate()
    reg = server_key_registration(key)
    same(admin.emit(KEY_REGISTERED, {"agent": {"provault:admin": {}}}, data=reg.to_data()))
    rev = KeyRevocation(keyid=key.keyid, effective_from=at(0), reason="leaked")
    same(admin.emit(KEY_REVOKED, {"agent": {"provault:admin": {}}}, data=rev.to_data()))


BIG = 123456789012345678901234567890


@pytest.mark.parametrize(
    ("rows", "expect"),
    [
        ([["req-1", "2025-03-02T09:50:00Z", "in", "out"]], "rows"),
        ([["req-1", "2025-03-02T09:50:00.5Z", 1, 1.0]], "rows"),  # a short fraction; 1 and 1.0 stay apart
        ([["req-1", "2025-03-02T09:50:00.123456Z", True, None]], "rows"),
        ([["req 1/ä", "2025-03-02T09:50:00Z", {"x": [1, 2]}, "pos"]], "rows"),  # an id that needs escaping
        ([["provault:prediction/req-1", "2025-03-02T09:50:00Z", "in", "out"]], "rows"),  # already a node id
        ([["req-1", "2025-03-02T09:50:00Z", BIG, -BIG]], "rows"),  # integers beyond 64 bits stay exact
        ([["req-1", "2025-03-02T09:50:00Z", "in", "sha256:" + "1234567890" * 6 + "1234"]], "rows"),
        ([["req-1", "2025-02-30T09:50:00Z", "in", "out"]], "not a valid calendar date"),
        ([["req-1", "2025-03-02T24:50:00Z", "in", "out"]], "not a valid calendar date"),
        ([["req-1", "2025-03-02T09:50:00+01:00", "in", "out"]], "UTC written with 'T' and a 'Z' suffix"),
        ([["req-1", "2025-03-02T09:50:00.1234567Z", "in", "out"]], "at most 6 digits"),
        ([["req-1", 1741000000, "in", "out"]], "an RFC 3339 string"),
        ([["", "2025-03-02T09:50:00Z", "in", "out"]], "a non-empty string"),
        ([["req-1", "2025-03-02T09:50:00Z", "in"]], "an array of 4 values"),
        ([{"id": "req-1"}], "an array of 4 values"),
        ([["req-1", "2025-03-02T09:50:00Z", "a", "b"], ["req-1", "2025-03-02T09:51:00Z", "c", "d"]], "more than once"),
    ],
)
def test_prediction_batches_map_the_same_both_ways(rows: list, expect: str) -> None:
    got = same(predictions_logged(chain(), Ids(), rows=rows))
    if expect == "rows":
        assert len(got[4]) == len(rows)
        if rows[0][2] == BIG:
            assert got[4][0][3] == ("int", BIG) and got[4][0][4] == ("int", -BIG)
    else:
        assert got[0] == "UnprojectableEntry" and expect in got[2]


def test_a_ledger_row_that_disagrees_with_its_payload_gets_the_strict_error() -> None:
    sealed = predictions_logged(chain(), Ids())
    got = same(sealed, kind="dataset.registered")
    assert got[:2] == ("UnprojectableEntry", UnprojectableEntry.reason) and "ledger row kind" in got[2]
    got = same(sealed, event_id="01a24fc9-ee43-73ed-85d5-a4af4f16c541")
    assert "ledger row event id" in got[2]


def test_bytes_that_are_not_an_envelope_get_the_strict_error() -> None:
    for raw in (b"", b"{", b'{"payload": 5}', b'{"payload":"!!!","payloadType":"x","signatures":[]}'):
        with pytest.raises(DecodeError) as strict:
            map_entry(raw, 1)
        with pytest.raises(DecodeError) as fast:
            map_admitted(raw, 1, event_id="01a24fc9-ee43-73ed-85d5-a4af4f16c541", kind="dataset.registered")
        assert (type(fast.value), fast.value.message) == (type(strict.value), strict.value.message)


def test_times_read_the_fast_way_are_the_strict_ones() -> None:
    i = Ids()
    rows = [[f"r{n}", xsd_time(at(n)), None, None] for n in range(5)]
    got = same(predictions_logged(chain(), i, rows=rows))
    assert [p[2] for p in got[4]] == [typed(at(n)) for n in range(5)]
