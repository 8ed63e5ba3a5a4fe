"""What a trace answers: its nodes, edges, predictions and signers, the limits and directions, the errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.core.errors import ProvaultError
from ledger.core.events import format_time
from query._mapping import (
    RELATION_ENDS,
)

UPSTREAM, DOWNSTREAM, BOTH = "upstream", "downstream", "both"
DIRECTIONS = (UPSTREAM, DOWNSTREAM, BOTH)
RELATIONS = tuple(RELATION_ENDS)
DEFAULT_MAX_DEPTH = 20
DEFAULT_MAX_NODES = 10_000
DEFAULT_PREDICTIONS_LIMIT = 1000
KEY_KIND = "provault:Key"
SIGNED_BY = "provault:SignedBy"
"""``prov:type`` of the edge from a node to the key that signed an assertion about it."""

_KEYID = re.compile(r"[0-9a-f]{64}")

# --- errors ------------------------------------------------------------------------------


class NodeNotFound(ProvaultError):
    """The start node (or prediction) does not exist as of the requested seq."""

    reason = "not_found"


class AsOfNotProjected(ProvaultError):
    """The requested as-of lies beyond what the projector has reached (retry later)."""

    reason = "not_projected"


# --- answers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceNode:
    """A node as of the answer's seq, ``depth`` hops from the start."""

    id: str
    type: str | None
    label: str | None
    kind: str | None
    attributes: Mapping[str, Any] = field(hash=False)
    first_seq: int
    depth: int = 0
    seqs: tuple[int, ...] = ()
    """The entries behind the node: its first mention and the versions that gave it attributes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceEdge:
    """``src -[relation]-> dst`` in PROV's direction, introduced at ``seq``."""

    relation: str
    src: str
    dst: str
    seq: int
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False)
    origin: str = "prov"
    """``prov`` / ``key`` (projected edges), ``prediction`` or ``signature`` (made by the walk)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionRef:
    """One row of the prediction index."""

    id: str
    seq: int
    activity: str
    time: datetime
    input: Any = field(default=None, hash=False)
    output: Any = field(default=None, hash=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "activity": self.activity,
            "time": format_time(self.time),
            "input": self.input,
            "output": self.output,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """A key that signed entries behind an answer, and who holds it."""

    keyid: str
    key_node: str | None
    name: str | None
    role: str
    root_key: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    start: str
    """The resolved start: a node id, or ``provault:prediction/<id>``."""
    direction: str
    as_of_seq: int
    nodes: tuple[TraceNode, ...]
    """Breadth-first: by depth, then id; the start first."""
    edges: tuple[TraceEdge, ...]
    seqs: tuple[int, ...]
    truncated: bool
    prediction: dict[str, Any] | None = None
    """When the start was a prediction: its (first) index row."""
    signers: dict[int, str] = field(default_factory=dict, hash=False)
    """seq -> keyid of every entry in :attr:`seqs`."""
    keys: dict[str, Signer] = field(default_factory=dict, hash=False)
    """keyid -> the key's holder, for every key in :attr:`signers`."""
    predictions: tuple[str, ...] = ()
    """Downstream: one page of the prediction ids reached, ordered by id."""
    prediction_rows: tuple[PredictionRef, ...] = ()
    """The index rows of :attr:`predictions` (several when an id was logged again)."""
    predictions_total: int = 0
    """How many distinct prediction ids were reached, over all pages."""
    predictions_next: str | None = None
    """Pass as ``predictions_after`` for the next page; None on the last."""
    prediction_activities: tuple[str, ...] = ()
    """The nodes reached downstream whose predictions the answer lists (for :func:`predictions_page`)."""

    def node(self, node_id: str) -> TraceNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)
