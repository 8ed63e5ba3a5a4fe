"""The rows one entry adds to the projection, and how node versions fold into what prov.nodes holds."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.core.errors import DecodeError
from ledger.core.events import format_time
from ledger.core.vocab import KEY_NODE_PREFIX, PREDICT_PREFIX  # noqa: F401 - one spelling each, used by the mapping

PREDICTIONS_LOGGED = "predictions.logged"

PREDICTION_PREFIX = "provault:prediction/"
KEY_KIND = "provault:Key"
PREDICTION_KIND = "provault:Prediction"


# Relation section -> (formal attribute of the edge's source, of its destination).
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


def json_key(value: object) -> str:
    """Canonical JSON text: equal only for equal JSON (True is not 1, 1 is not 1.0, key order does not count)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def changed_attributes(state: dict[str, dict[str, str]], node_id: str, said: Mapping[str, Any]) -> dict[str, Any]:
    """What an entry's statement about ``node_id`` changes in its merged state (which it then updates).

    A node version keeps only these: restating an unchanged agent, host or
    environment in every run adds a mention (``{}``), not a copy of its
    attributes.  Folding versions still gives every as-of state exactly
    (per attribute the highest seq wins, and a dropped value equals the one
    it would have won over), and the versions left are the evidence of the
    node's state (docs/query.md, "Evidence").
    """
    current = state.setdefault(node_id, {})
    out: dict[str, Any] = {}
    for name, value in said.items():
        text = json_key(value)
        if current.get(name) != text:
            current[name] = text
            out[name] = value
    return out
