"""The rows the projector writes for a workload entry: a fast mapper, and the projector's own mapping to check it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.query.workload import T0, Item
from ledger.core.events import Event, Producer, format_time
from ledger.core.ids import new_event_id
from ledger.core.producing import with_prefixes
from ledger.core.provjson import ELEMENT_SECTIONS, RELATIONS, TIME_ATTRIBUTES
from query._mapping import RELATION_ENDS, map_event

_IMPLIED = {
    "prov:entity": "entity",
    "prov:activity": "activity",
    "prov:agent": "agent",
    "prov:informed": "activity",
    "prov:informant": "activity",
    "prov:generatedEntity": "entity",
    "prov:usedEntity": "entity",
    "prov:collection": "entity",
}
_FORMALS = {rel: tuple(a for a in req + opt if a not in TIME_ATTRIBUTES) for rel, (req, opt) in RELATIONS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rows:
    nodes: dict[str, tuple[str | None, dict[str, Any]]]
    """id -> (type, attributes) as this entry mentions it"""
    edges: list[tuple[str, str, str, str, str, dict[str, Any]]]
    """(relation, src, dst, statement id, origin, attributes) in ordinal order"""
    predictions: list[tuple[str, str, str, Any, Any]]
    """(id, activity, time, input, output)"""


def fast_rows(item: Item) -> Rows:
    """The rows ``query._mapping.map_event`` makes of the item's document, for the names this workload uses."""
    doc, nodes = item.doc, {}
    for section in ELEMENT_SECTIONS:
        for nid, attrs in doc.get(section, {}).items():
            nodes[nid] = (section, dict(attrs))
    edges = []
    for rel in RELATIONS:
        src_attr, dst_attr = RELATION_ENDS[rel]
        for sid in sorted(doc.get(rel, ())):
            st = doc[rel][sid]
            for attr in _FORMALS[rel]:
                if attr in st and (st[attr] not in nodes or nodes[st[attr]][0] is None):
                    nodes[st[attr]] = (_IMPLIED[attr], nodes.get(st[attr], (None, {}))[1])
            edges.append(
                (
                    rel,
                    st[src_attr],
                    st[dst_attr],
                    sid,
                    "prov",
                    {k: v for k, v in st.items() if k not in (src_attr, dst_attr)},
                )
            )
    preds = []
    if item.kind == "predictions.logged":
        batch = next(iter(doc["activity"]))
        preds = [("provault:prediction/" + r[0], batch, r[1], r[2], r[3]) for r in item.data["rows"]]
    return Rows(nodes=nodes, edges=edges, predictions=preds)


def _event(item: Item) -> Event:
    when = datetime.fromtimestamp(T0 + item.seq, UTC)
    return Event(
        id=new_event_id(),
        time=when,
        kind=item.kind,
        producer=Producer.first(item.producer),
        prov=with_prefixes(item.doc),
        data=item.data,
    )


def projector_rows(item: Item) -> Rows:
    """The same rows from the projector's own mapping (slow: validates the document)."""
    r = map_event(_event(item), item.seq)
    return Rows(
        nodes={n.id: (n.node_type, dict(n.attributes)) for n in r.nodes},
        edges=[(e.relation, e.src, e.dst, e.stmt_id, e.origin, dict(e.attributes)) for e in r.edges],
        predictions=[(p.id, p.activity, format_time(p.time), p.input, p.output) for p in r.predictions],
    )
