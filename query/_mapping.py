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

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from ledger.core.envelope import parse_envelope
from ledger.core.errors import DecodeError, InvalidEvent, expected_found
from ledger.core.events import Event, format_time, parse_event, parse_time
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, parse_registration, parse_revocation
from ledger.core.provjson import PREDEFINED_PREFIXES, Statement, iter_statements, prefixes
from ledger.core.vocab import PREFIXES, PROVAULT_NS, host_id, person_id, prediction_id, service_id

PREDICTIONS_LOGGED = "predictions.logged"
KEY_NODE_PREFIX = "provault:key/"
PREDICTION_PREFIX = "provault:prediction/"
PREDICT_PREFIX = "provault:predict/"
KEY_KIND = "provault:Key"
PREDICTION_KIND = "provault:Prediction"

# Relation section -> (formal attribute of the edge's source, of its destination).
RELATION_ENDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "used": ("prov:activity", "prov:entity"),
        "wasGeneratedBy": ("prov:entity", "prov:activity"),
        "wasInformedBy": ("prov:informed", "prov:informant"),
        "wasStartedBy": ("prov:activity", "prov:trigger"),
        "wasEndedBy": ("prov:activity", "prov:trigger"),
        "wasInvalidatedBy": ("prov:entity", "prov:activity"),
        "wasDerivedFrom": ("prov:generatedEntity", "prov:usedEntity"),
        "wasAttributedTo": ("prov:entity", "prov:agent"),
        "wasAssociatedWith": ("prov:activity", "prov:agent"),
        "actedOnBehalfOf": ("prov:delegate", "prov:responsible"),
        "wasInfluencedBy": ("prov:influencee", "prov:influencer"),
        "specializationOf": ("prov:specificEntity", "prov:generalEntity"),
        "alternateOf": ("prov:alternate1", "prov:alternate2"),
        "hadMember": ("prov:collection", "prov:entity"),
    }
)

# Formal attribute -> the node type it implies (None: any type).
_REF_TYPES: Mapping[str, str | None] = MappingProxyType(
    {
        "prov:entity": "entity",
        "prov:activity": "activity",
        "prov:agent": "agent",
        "prov:informed": "activity",
        "prov:informant": "activity",
        "prov:trigger": "entity",
        "prov:starter": "activity",
        "prov:ender": "activity",
        "prov:generatedEntity": "entity",
        "prov:usedEntity": "entity",
        "prov:delegate": "agent",
        "prov:responsible": "agent",
        "prov:plan": "entity",
        "prov:specificEntity": "entity",
        "prov:generalEntity": "entity",
        "prov:alternate1": "entity",
        "prov:alternate2": "entity",
        "prov:collection": "entity",
        "prov:influencee": None,
        "prov:influencer": None,
    }
)
# Formal attributes that name other relations (by statement id), not nodes.
_RELATION_REFS = frozenset({"prov:generation", "prov:usage"})

_IDENTITY_NODES: Mapping[str, tuple[Callable[[str], str], str]] = MappingProxyType(
    {
        "person": (person_id, "prov:Person"),
        "service": (service_id, "prov:SoftwareAgent"),
        "host": (host_id, "provault:Host"),
    }
)
_PREDICTION_COLUMNS = ("id", "time", "input", "output")

# Fixed prefixes, longest namespace first so the most specific one names an IRI.
_CANONICAL: tuple[tuple[str, str], ...] = tuple(
    sorted({**PREDEFINED_PREFIXES, **PREFIXES}.items(), key=lambda kv: (-len(kv[1]), kv[0]))
)
_CANONICAL_PREFIXES = frozenset(p for p, _ in _CANONICAL)


class UnprojectableEntry(DecodeError):
    """A logged entry whose content the projection cannot represent (recorded in prov.skipped)."""

    reason = "unprojectable"


# --- rows ------------------------------------------------------------------------


def _first_value(value: Any, prefer: str | None = None) -> Any:
    if isinstance(value, (list, tuple)):
        if prefer is not None:
            for item in value:
                if _lexical(item).startswith(prefer):
                    return item
        return value[0] if value else None
    return value


def _lexical(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return str(value.get("$", ""))
    return json.dumps(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRow:
    """One node as one entry mentions it: a row of prov.node_versions.

    ``attributes`` is what this entry says about the node, names canonical,
    values as written in PROV-JSON form; empty when the entry only refers to it.
    """

    id: str
    iri: str
    node_type: str | None
    attributes: Mapping[str, Any] = field(hash=False)

    @property
    def label(self) -> str | None:
        return node_label(self.attributes)

    @property
    def kind(self) -> str | None:
        return node_kind(self.attributes)


def node_label(attributes: Mapping[str, Any]) -> str | None:
    """The label of merged node attributes: the (first) ``prov:label``."""
    if "prov:label" not in attributes:
        return None
    return _lexical(_first_value(attributes["prov:label"]))


def node_kind(attributes: Mapping[str, Any]) -> str | None:
    """The kind of merged node attributes: the ``prov:type``, a ``provault:`` one first."""
    if "prov:type" not in attributes:
        return None
    return _lexical(_first_value(attributes["prov:type"], prefer="provault:"))


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeRow:
    """One edge: ``src`` -[relation]-> ``dst``, the ``ordinal``-th of its entry."""

    ordinal: int
    relation: str
    src: str
    dst: str
    stmt_id: str
    origin: str
    """``prov`` (a statement of the event's PROV document) or ``key`` (from key.registered data)."""
    attributes: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionRow:
    id: str
    activity: str
    time: datetime
    input: Any = field(default=None, hash=False)
    output: Any = field(default=None, hash=False)


def prediction_attributes(time: datetime, input: Any, output: Any) -> dict[str, Any]:
    """A prediction shown as an entity: the attributes the traversal presents and a bundle verifier recomputes
    (``prov:type`` ``provault:Prediction``, its time, and its input and output when the row has them)."""
    attrs: dict[str, Any] = {"prov:type": PREDICTION_KIND, "prov:generatedAtTime": format_time(time)}
    attrs.update({f"provault:{k}": v for k, v in (("input", input), ("output", output)) if v is not None})
    return attrs


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryRows:
    """Everything one log entry adds to the projection."""

    seq: int
    kind: str
    nodes: tuple[NodeRow, ...]
    edges: tuple[EdgeRow, ...]
    predictions: tuple[PredictionRow, ...] = ()


# --- names -----------------------------------------------------------------------


def canonical_id(iri: str) -> str:
    """The projection's spelling of the node (or attribute) named by ``iri``."""
    for prefix, ns in _CANONICAL:
        if iri.startswith(ns) and len(iri) > len(ns):
            return f"{prefix}:{iri[len(ns) :]}"
    if iri.partition(":")[0] in _CANONICAL_PREFIXES:
        return f"<{iri}>"
    return iri


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


class _Names:
    """Expands one document's qualified names (already validated) to canonical ids."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.prefixes = dict(prefixes(doc))
        self.default = doc.get("prefix", {}).get("default")

    def iri(self, qname: str) -> str:
        prefix, colon, local = qname.partition(":")
        if not colon:
            return f"{self.default}{qname}"
        return self.prefixes[prefix] + local

    def id(self, qname: str) -> str:
        return qname if qname.startswith("_:") else canonical_id(self.iri(qname))


# --- building one entry's rows -------------------------------------------------------


@dataclass(slots=True)
class _Mention:
    iri: str
    node_type: str | None = None
    declared: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


class _Builder:
    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.names = _Names(doc)
        self.mentions: dict[str, _Mention] = {}
        self.edges: list[EdgeRow] = []

    def mention(self, node_id: str, iri: str) -> _Mention:
        if node_id not in self.mentions:
            self.mentions[node_id] = _Mention(iri=iri)
        return self.mentions[node_id]

    def ref(self, qname: str, node_type: str | None) -> str:
        node_id = self.names.id(qname)
        m = self.mention(node_id, self.names.iri(qname))
        if m.node_type is None:
            m.node_type = node_type
        return node_id

    def element(self, st: Statement) -> None:
        m = self.mention(self.names.id(st.id), self.names.iri(st.id))
        if not m.declared:
            m.node_type, m.declared = st.section, True
        for name, value in st.attributes.items():
            m.attributes[self.names.id(name)] = _thaw(value)

    def relation(self, st: Statement) -> None:
        src_attr, dst_attr = RELATION_ENDS[st.section]
        srcs: list[str] = []
        dsts: list[str] = []
        extra: dict[str, Any] = {}
        for attr, qname in st.refs:
            if attr in _RELATION_REFS:
                extra[attr] = self.names.id(qname)
                continue
            node_id = self.ref(qname, _REF_TYPES[attr])
            if attr == src_attr:
                srcs.append(node_id)
            elif attr == dst_attr:
                dsts.append(node_id)
            else:
                extra[attr] = node_id
        attributes = {self.names.id(k): _thaw(v) for k, v in st.attributes.items() if k not in (src_attr, dst_attr)}
        attributes.update(extra)
        for src in srcs:
            for dst in dsts:
                self.edge(st.section, src, dst, stmt_id=self.names.id(st.id), origin="prov", attributes=attributes)

    def edge(
        self, relation: str, src: str, dst: str, *, stmt_id: str, origin: str, attributes: Mapping[str, Any]
    ) -> None:
        self.edges.append(
            EdgeRow(
                ordinal=len(self.edges),
                relation=relation,
                src=src,
                dst=dst,
                stmt_id=stmt_id,
                origin=origin,
                attributes=MappingProxyType(dict(attributes)),
            )
        )

    def synthetic(self, node_id: str, node_type: str, attributes: Mapping[str, Any]) -> None:
        """A node the ledger's own data implies; the event's PROV statements win over it."""
        m = self.mention(node_id, _provault_iri(node_id))
        if not m.declared:
            m.node_type, m.declared = node_type, True
        for name, value in attributes.items():
            m.attributes.setdefault(name, value)

    def rows(self, seq: int, kind: str, predictions: Sequence[PredictionRow] = ()) -> EntryRows:
        nodes = tuple(
            NodeRow(id=nid, iri=m.iri, node_type=m.node_type, attributes=MappingProxyType(m.attributes))
            for nid, m in self.mentions.items()
        )
        return EntryRows(seq=seq, kind=kind, nodes=nodes, edges=tuple(self.edges), predictions=tuple(predictions))


def _provault_iri(node_id: str) -> str:
    prefix, _, local = node_id.partition(":")
    if prefix != "provault":
        raise AssertionError(f"synthetic node ids are provault: names, got {node_id!r}")
    return PROVAULT_NS + local


# --- kind-specific rows ------------------------------------------------------------


def key_node_id(keyid: str) -> str:
    return KEY_NODE_PREFIX + keyid


def _key_rows(event: Event, b: _Builder) -> None:
    if event.kind == KEY_REGISTERED:
        reg = parse_registration(event)
        key = key_node_id(reg.keyid)
        b.synthetic(
            key,
            "entity",
            {
                "prov:type": KEY_KIND,
                "provault:keyid": reg.keyid,
                "provault:role": reg.role,
                "provault:kinds": list(reg.kinds),
                "provault:producers": list(reg.producers),
            },
        )
        make_id, agent_type = _IDENTITY_NODES[reg.identity["type"]]
        agent = make_id(reg.identity["name"])
        b.synthetic(agent, "agent", {"prov:type": agent_type, "prov:label": reg.identity["name"]})
        b.edge("wasAttributedTo", key, agent, stmt_id="_:key", origin="key", attributes={})
    elif event.kind == KEY_REVOKED:
        rev = parse_revocation(event)
        b.synthetic(
            key_node_id(rev.keyid),
            "entity",
            {
                "provault:revokedFrom": {"$": format_time(rev.effective_from), "type": "xsd:dateTime"},
                "provault:revocationReason": rev.reason,
            },
        )


def _batch_activity(b: _Builder) -> str:
    declared = [nid for nid, m in b.mentions.items() if m.declared and m.node_type == "activity"]
    batches = [nid for nid in declared if nid.startswith(PREDICT_PREFIX)] or declared
    if len(batches) != 1:
        raise UnprojectableEntry(
            expected_found(
                "predictions.logged activities", f"exactly one ({PREDICT_PREFIX}<uuid>)", sorted(batches) or "none"
            ),
            hint="declare the batch activity in the event's prov 'activity' section",
        )
    return batches[0]


def _columns(data: Mapping[str, Any]) -> tuple[str, ...]:
    columns = data.get("columns")
    if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
        raise UnprojectableEntry(expected_found("data.columns", "a list of column names", repr(columns)[:80]))
    if len(set(columns)) != len(columns) or not {"id", "time"} <= set(columns):
        raise UnprojectableEntry(
            expected_found("data.columns", "distinct names including 'id' and 'time'", list(columns)[:8]),
            hint=f"columns are {', '.join(_PREDICTION_COLUMNS)}",
        )
    return tuple(columns)


def _prediction(columns: Sequence[str], row: Any, index: int, activity: str) -> PredictionRow:
    where = f"data.rows[{index}]"
    if not isinstance(row, (list, tuple)) or len(row) != len(columns):
        raise UnprojectableEntry(expected_found(where, f"an array of {len(columns)} values", repr(row)[:80]))
    rec = dict(zip(columns, row, strict=True))
    pid = rec["id"]
    if not isinstance(pid, str) or not pid:
        raise UnprojectableEntry(expected_found(f"{where} id", "a non-empty string", repr(pid)[:80]))
    if not isinstance(rec["time"], str):
        raise UnprojectableEntry(expected_found(f"{where} time", "an RFC 3339 string", repr(rec["time"])[:80]))
    try:
        time = parse_time(rec["time"])
    except InvalidEvent as e:
        raise UnprojectableEntry(f"{where}: {e.message}") from None
    node = pid if pid.startswith(PREDICTION_PREFIX) else prediction_id(pid)
    return PredictionRow(
        id=node, activity=activity, time=time, input=_thaw(rec.get("input")), output=_thaw(rec.get("output"))
    )


def _prediction_rows(event: Event, b: _Builder) -> tuple[PredictionRow, ...]:
    data = event.data
    if data is None:
        raise UnprojectableEntry(
            "predictions.logged has no data", hint="the predictions go in data.columns / data.rows"
        )
    columns = _columns(data)
    rows = data.get("rows")
    if not isinstance(rows, (list, tuple)):
        raise UnprojectableEntry(expected_found("data.rows", "an array of rows", repr(rows)[:80]))
    activity = _batch_activity(b)
    out = [_prediction(columns, row, i, activity) for i, row in enumerate(rows)]
    seen: set[str] = set()
    for i, p in enumerate(out):
        if p.id in seen:
            raise UnprojectableEntry(f"data.rows[{i}]: prediction id {p.id!r} appears more than once in the batch")
        seen.add(p.id)
    return tuple(out)


# --- entry points ----------------------------------------------------------------------


def map_event(event: Event, seq: int) -> EntryRows:
    """The projection rows of a parsed event logged at ``seq``."""
    b = _Builder(event.prov)
    for st in iter_statements(event.prov):
        if st.is_relation:
            b.relation(st)
        else:
            b.element(st)
    if event.kind in (KEY_REGISTERED, KEY_REVOKED):
        _key_rows(event, b)
    predictions = _prediction_rows(event, b) if event.kind == PREDICTIONS_LOGGED else ()
    return b.rows(seq, event.kind, predictions)


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


def fold_attributes(versions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge node versions in seq order: per attribute, the last one wins (what prov.nodes holds)."""
    merged: dict[str, Any] = {}
    for attributes in versions:
        merged.update(attributes)
    return merged


@dataclass(slots=True, kw_only=True)
class NodeChange:
    """What a run of consecutive entries does to one node (a prov.nodes upsert)."""

    id: str
    iri: str
    node_type: str | None
    attributes: dict[str, Any]
    first_seq: int
    last_seq: int

    @property
    def label(self) -> str | None:
        return node_label(self.attributes)

    @property
    def kind(self) -> str | None:
        return node_kind(self.attributes)


def fold_nodes(entries: Iterable[EntryRows]) -> dict[str, NodeChange]:
    """Fold the node versions of entries given in seq order, one change per node.

    Applying a change to the stored node -- type kept once known, attributes
    merged with ``||`` (the change's win), label and kind taken from the
    change when it has them -- gives the same node as folding every version
    from the first: folding is associative, so chunk boundaries do not matter.
    """
    changes: dict[str, NodeChange] = {}
    for entry in entries:
        for node in entry.nodes:
            c = changes.get(node.id)
            if c is None:
                changes[node.id] = NodeChange(
                    id=node.id,
                    iri=node.iri,
                    node_type=node.node_type,
                    attributes=dict(node.attributes),
                    first_seq=entry.seq,
                    last_seq=entry.seq,
                )
                continue
            c.node_type = c.node_type or node.node_type
            c.attributes.update(node.attributes)
            c.last_seq = entry.seq
    return changes


__all__ = [
    "KEY_NODE_PREFIX",
    "PREDICTION_KIND",
    "RELATION_ENDS",
    "EdgeRow",
    "EntryRows",
    "NodeRow",
    "PredictionRow",
    "UnprojectableEntry",
    "canonical_id",
    "NodeChange",
    "fold_attributes",
    "fold_nodes",
    "key_node_id",
    "map_entry",
    "map_event",
    "node_kind",
    "node_label",
    "prediction_attributes",
]
