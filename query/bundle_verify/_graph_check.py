"""Step 4: the nodes and edges the bundle states are the ones its events recompute to."""

from __future__ import annotations

import json
from typing import Any

from ledger.core.errors import (
    VerificationFailed,
    expected_found,
)
from ledger.core.events import Event
from provault.v1 import query_pb2
from query.wire import RELATION_NAMES, attributes_json

from ._errors import _at, _fail
from ._keys import _Signed
from .graph import Graph, node_pb, recompute_graph

# 4. events and graph --------------------------------------------------------------------------


def _check_graph(b: query_pb2.AuditBundle, signed: dict[int, _Signed]) -> Graph:
    events: list[tuple[int, Event]] = []
    for pe in b.entries:
        events.append((pe.entry.seq, signed[pe.entry.seq].event))
    with _at(4, "entries"):
        graph = recompute_graph(events)
    for i, n in enumerate(b.nodes):
        _compare_node(n, graph, f"nodes[{i}] ({n.id[:120]})")
    for i, e in enumerate(b.edges):
        _compare_edge(
            e, graph, {n.id for n in b.nodes}, f"edges[{i}] ({e.from_id[:80]} -> {e.to_id[:80]}, seq {e.seq})"
        )
    if b.node_id not in {n.id for n in b.nodes}:
        _fail(4, "node_id", VerificationFailed, f"the subject {b.node_id[:120]!r} is not among the bundle's nodes")
    return graph


def _load_attributes(text: str, place: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate member name")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        _fail(4, place, VerificationFailed, f"attributes_json is not one JSON object: {str(e)[:120]}")


def _compare_node(n: query_pb2.Node, graph: Graph, place: str) -> None:
    node = graph.nodes.get(n.id)
    if node is None:
        _fail(
            4,
            place,
            VerificationFailed,
            "no entry of the bundle mentions this node",
            hint="the node was altered, or its entries are missing from the bundle",
        )
    want = node_pb(node)
    for what in ("type", "kind", "label", "introduced_seq"):
        found, recomputed = getattr(n, what), getattr(want, what)
        if found != recomputed:
            _fail(
                4,
                place,
                VerificationFailed,
                expected_found(what, f"{recomputed!r} (recomputed from the entries)", repr(found)),
            )
    if _load_attributes(n.attributes_json, place) != node.attributes:
        wrong = expected_found("attributes_json", f"{want.attributes_json[:200]} (recomputed)", n.attributes_json[:200])
        _fail(4, place, VerificationFailed, wrong)


def _compare_edge(e: query_pb2.Edge, graph: Graph, node_ids: set[str], place: str) -> None:
    relation = RELATION_NAMES.get(e.relation)
    stated = graph.edges.get((relation or "", e.from_id, e.to_id, e.seq))
    if relation is None or stated is None:
        what = relation or f"relation {e.relation}"
        _fail(4, place, VerificationFailed, f"the entry at seq {e.seq} states no {what} edge between these nodes")
    if _load_attributes(e.attributes_json, place) not in stated:
        recomputed = " or ".join(attributes_json(a) for a in stated)[:200]
        _fail(4, place, VerificationFailed, expected_found("attributes_json", recomputed, e.attributes_json[:200]))
    for end in (e.from_id, e.to_id):
        if end not in node_ids:
            _fail(4, place, VerificationFailed, f"edge end {end[:120]!r} is not among the bundle's nodes")
