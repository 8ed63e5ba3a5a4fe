"""Building one entry's nodes and edges from its PROV-JSON statements."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ledger.core.provjson import Statement
from ledger.core.vocab import PROVAULT_NS, host_id, person_id, service_id

from ._names import _Names
from ._rows import EdgeRow, EntryRows, NodeRow, PredictionRow

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
            key, v = self.names.id(name), self.names.value(value)
            m.attributes[key] = _merged(m.attributes[key], v) if key in m.attributes else v

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
        attributes = {
            self.names.id(k): self.names.value(v) for k, v in st.attributes.items() if k not in (src_attr, dst_attr)
        }
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


def _merged(first: Any, second: Any) -> Any:
    """Two statements' values of one attribute of one node: PROV merges them, keeping each value once."""
    items: list[Any] = []
    for v in (*_items(first), *_items(second)):
        if v not in items:
            items.append(v)
    return items[0] if len(items) == 1 else items


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _provault_iri(node_id: str) -> str:
    prefix, _, local = node_id.partition(":")
    if prefix != "provault":
        raise AssertionError(f"synthetic node ids are provault: names, got {node_id!r}")
    return PROVAULT_NS + local
