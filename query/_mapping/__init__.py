"""From one ledger entry to the rows of the PROV projection, pure.

:func:`map_entry` turns the exact envelope bytes of a log entry (and its seq)
into an :class:`EntryRows`: the nodes the entry mentions with what it says
about them, its edges and, for ``predictions.logged``, its prediction index
rows.  The same bytes always give the same rows; nothing here reads a clock,
a database or a random source, so an offline verifier can recompute a trace
from envelopes with this module alone (docs/query.md).

Rules, in short:

* **Node ids** are qualified names in one canonical spelling: a name whose
  IRI falls under a fixed prefix (``provault``, ``sha256``, ``prov``, ``xsd``)
  is written ``prefix:local`` whatever prefix the event used for it; any
  other name is written as its full IRI (``<iri>`` if that IRI would read as
  a fixed-prefix name).  Producers that use the fixed prefixes (every event
  made with provault's code) therefore see their ids exactly as written, and
  two events cannot collide by binding one prefix to different IRIs.
  Attribute names follow the same rule; attribute values stay as written.
* **Edges** point from the dependent to what it depends on, PROV's own
  direction (:data:`RELATION_ENDS`).  The remaining formal attributes of a
  relation (``prov:time``, ``prov:plan``, ``prov:activity`` of a derivation,
  ...) go into the edge's attributes.  A relation whose object is absent (a
  ``used`` without ``prov:entity``) names its nodes but makes no edge.
* **Node types** come from the element sections; a node only referenced by
  relations gets the type its formal attribute implies (``prov:agent`` of
  ``wasAssociatedWith`` is an agent).  Only ``wasInfluencedBy`` implies none.
* **Keys**: ``key.registered`` adds the entity ``provault:key/<keyid>``
  (``prov:type`` ``provault:Key``) ``wasAttributedTo`` the identity it binds
  (``provault:person/…``, ``provault:service/…`` or ``provault:host/…``);
  ``key.revoked`` adds the revocation to the key's attributes.
* **Predictions**: each row of a ``predictions.logged`` event's ``data``
  becomes one :class:`PredictionRow` pointing at the batch activity.

An entry that cannot be mapped raises a :class:`~ledger.core.errors.DecodeError`
(from the core parsers, or :class:`UnprojectableEntry`); the projector records
it as skipped.  Anything else escaping from here is a bug.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ledger.core.envelope import parse_envelope
from ledger.core.errors import expected_found
from ledger.core.events import Event, parse_event
from ledger.core.fastjson import loads as json_loads
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED
from ledger.core.provjson import iter_statements

from ._builder import RELATION_ENDS, _Builder
from ._kinds import _key_rows, _prediction_rows, key_node_id
from ._names import canonical_id
from ._rows import (
    KEY_NODE_PREFIX,
    PREDICTION_KIND,
    PREDICTION_PREFIX,
    PREDICTIONS_LOGGED,
    EdgeRow,
    EntryRows,
    NodeChange,
    NodeRow,
    PredictionRow,
    UnprojectableEntry,
    changed_attributes,
    fold_attributes,
    fold_nodes,
    json_key,
    node_kind,
    node_label,
    prediction_attributes,
)

# --- entry points ----------------------------------------------------------------------


def map_event(event: Event, seq: int) -> EntryRows:
    """The projection rows of a parsed event logged at ``seq``."""
    b = _statements(event.prov)  # an Event validates its prov when it is made
    if event.kind in (KEY_REGISTERED, KEY_REVOKED):
        _key_rows(event, b)
    predictions = _prediction_rows(event.data, b) if event.kind == PREDICTIONS_LOGGED else ()
    return b.rows(seq, event.kind, predictions)


def _statements(prov: Mapping[str, Any]) -> _Builder:
    b = _Builder(prov)
    for st in iter_statements(prov, validated=True):
        if st.is_relation:
            b.relation(st)
        else:
            b.element(st)
    return b


def map_entry(envelope: bytes, seq: int, *, event_id: str | None = None, kind: str | None = None) -> EntryRows:
    """The projection rows of a log entry, from its exact envelope bytes.

    No size limits apply (the ledger admitted the entry under its own); the
    signature is not checked again (the ledger did, ``provault verify``
    audits it).  ``event_id`` / ``kind``, when given, are the ledger row's
    columns and must match the signed payload.
    """
    env = parse_envelope(envelope, max_size=len(envelope))
    event = parse_event(env.payload, max_size=len(env.payload))
    for name, stored, signed in (("event id", event_id, event.id), ("kind", kind, event.kind)):
        if stored is not None and stored != signed:
            raise UnprojectableEntry(
                expected_found(f"ledger row {name}", f"the signed payload's {signed!r}", repr(stored)),
                hint="the ledger row disagrees with its envelope: run `provault verify`",
            )
    return map_event(event, seq)


def map_admitted(envelope: bytes, seq: int, *, event_id: str, kind: str, payload: bytes | None = None) -> EntryRows:
    """:func:`map_entry` for an entry the ledger admitted, without checking again what admission checked.

    Admission parsed the envelope and the event strictly (canonical envelope,
    no duplicate JSON members, a valid PROV document), so the projector reads
    them with :mod:`ledger.core.fastjson` and maps the plain values: the same
    rows as :func:`map_entry` for every admitted entry, in a fraction of the
    time.  Anything unusual -- a key event, a ledger row that disagrees with
    its payload, bytes that do not decode --
    goes through :func:`map_entry`, which gives the exact rows or the exact
    error.  ``payload``, when given, is the envelope's (as the ledger stores
    it), so it is not decoded again.
    """
    try:
        if payload is None:
            payload = base64.b64decode(json_loads(envelope)["payload"], validate=True)
        doc = json_loads(payload)
        prov, data = doc["prov"], doc.get("data")
        plain = doc["id"] == event_id and doc["kind"] == kind and kind not in (KEY_REGISTERED, KEY_REVOKED)
    except (ValueError, KeyError, TypeError, binascii.Error):  # JSON decoding errors are ValueErrors
        plain = False
    if not plain:
        return map_entry(envelope, seq, event_id=event_id, kind=kind)
    b = _statements(prov)
    predictions = _prediction_rows(data, b, plain=True) if kind == PREDICTIONS_LOGGED else ()
    return b.rows(seq, kind, predictions)


__all__ = [
    "KEY_NODE_PREFIX",
    "PREDICTION_PREFIX",
    "PREDICTION_KIND",
    "RELATION_ENDS",
    "EdgeRow",
    "EntryRows",
    "NodeRow",
    "PredictionRow",
    "UnprojectableEntry",
    "canonical_id",
    "changed_attributes",
    "NodeChange",
    "fold_attributes",
    "fold_nodes",
    "json_key",
    "key_node_id",
    "map_admitted",
    "map_entry",
    "map_event",
    "node_kind",
    "node_label",
    "prediction_attributes",
]
