"""The statements of a verified bundle: every node attribute and edge with the seq that states it and its signer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.core.envelope import parse_envelope
from ledger.core.events import Event, parse_event
from ledger.core.keyring import KEY_REGISTERED, parse_registration
from provault.v1 import query_pb2
from query._mapping import EntryRows, map_event, node_kind, node_label


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    seq: int
    keyid: str
    event: Event
    rows: EntryRows


@dataclass(slots=True, kw_only=True)
class Facts:
    entries: dict[int, Entry] = field(default_factory=dict)
    signers: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str | None] = field(default_factory=dict)
    edges: list[tuple[int, str, str, str, Mapping[str, Any]]] = field(default_factory=list)
    """(seq, relation, src, dst, attributes) in seq order."""
    attrs: list[tuple[int, str, str, Any]] = field(default_factory=list)
    """(seq, node, attribute, value): what each entry says about each node."""

    def signer(self, seq: int) -> str:
        kid = self.entries[seq].keyid
        return f"{self.signers.get(kid, 'unregistered key')} · key {kid[:16]}"

    def name(self, node: str) -> str:
        label = self.labels.get(node)
        return f"{node} ({label})" if label else node


def _event(pe: query_pb2.ProvenEntry) -> Event:
    raw = pe.entry.envelope_json
    env = parse_envelope(raw, max_size=max(len(raw), 1))
    return parse_event(env.payload, max_size=max(len(env.payload), 1))


def facts(bundle: query_pb2.AuditBundle) -> Facts:
    f = Facts()
    for kid in bundle.root_keyids:
        f.signers[kid] = "root (admin) key"
    for pe in bundle.key_entries:
        event = _event(pe)
        if event.kind == KEY_REGISTERED:
            reg = parse_registration(event)
            who = reg.identity
            f.signers[reg.keyid] = f"{who.get('name', '?')} ({who.get('type', '?')}, {reg.role})"
    for n in bundle.nodes:
        f.kinds[n.id] = n.kind or None
        f.labels[n.id] = n.label or None
    seen: set[int] = set()
    for pe in [*bundle.key_entries, *bundle.entries]:
        if pe.entry.seq in seen:
            continue
        seen.add(pe.entry.seq)
        event = _event(pe)
        rows = map_event(event, pe.entry.seq)
        f.entries[pe.entry.seq] = Entry(seq=pe.entry.seq, keyid=pe.entry.keyid, event=event, rows=rows)
    for seq in sorted(f.entries):
        rows = f.entries[seq].rows
        for n in rows.nodes:
            f.kinds[n.id] = f.kinds.get(n.id) or node_kind(n.attributes)
            f.labels[n.id] = f.labels.get(n.id) or node_label(n.attributes)
            f.attrs.extend((seq, n.id, k, v) for k, v in sorted(n.attributes.items()))
        f.edges.extend((seq, e.relation, e.src, e.dst, e.attributes) for e in rows.edges)
    return f


def value(v: Any) -> str:
    if isinstance(v, Mapping) and "$" in v:
        return str(v["$"])
    if isinstance(v, list):
        return ", ".join(value(x) for x in v)
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def role(attrs: Mapping[str, Any]) -> str:
    role = attrs.get("prov:role")
    return value(role) if role is not None else ""


def reach(f: Facts, start: str, *, upstream: bool) -> set[str]:
    """Nodes reachable from ``start`` along PROV's direction (upstream) or against it (downstream).

    ``wasInvalidatedBy`` is not followed: what ended a model or a deployment (a quarantine, a retirement)
    is not part of its making, and its people are not the model's authors."""
    nxt: dict[str, set[str]] = {}
    for _, rel, src, dst, _ in f.edges:
        if rel == "wasInvalidatedBy":
            continue
        a, b = (src, dst) if upstream else (dst, src)
        nxt.setdefault(a, set()).add(b)
    seen, todo = {start}, [start]
    while todo:
        for b in nxt.get(todo.pop(), ()):
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


__all__ = ["Entry", "Facts", "facts", "reach", "role", "value"]
