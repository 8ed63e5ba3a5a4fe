"""Answers as QueryService messages: nodes and edges, Trace pages with their predictions, proofs, SPARQL rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ledger.core.errors import InvalidArgument, expected_found
from provault.v1 import query_pb2

from . import traverse
from .bundle import proofs_for
from .traverse import PredictionRef, Trace, TraceEdge, TraceNode
from .wire import edge_message, node_message

# --- conversion to protobuf ----------------------------------------------------------------


def node_pb(n: TraceNode) -> query_pb2.Node:
    return node_message(
        id=n.id, node_type=n.type, kind=n.kind, label=n.label, attributes=n.attributes, introduced_seq=n.first_seq
    )


def edge_pb(e: TraceEdge) -> query_pb2.Edge:
    return edge_message(relation=e.relation, src=e.src, dst=e.dst, seq=e.seq, attributes=e.attributes)


# --- Trace pages ---------------------------------------------------------------------------


def _prediction_items(trace: Trace, rows: Sequence[PredictionRef]) -> tuple[list[TraceNode], list[TraceEdge]]:
    depth = {n.id: n.depth for n in trace.nodes}
    by_id: dict[str, list[PredictionRef]] = {}
    for r in rows:
        by_id.setdefault(r.id, []).append(r)
    nodes = [traverse.prediction_node(rs, depth=min(depth.get(r.activity, 0) for r in rs) + 1) for rs in by_id.values()]
    return nodes, [traverse.prediction_edge(r) for r in rows]


def trace_page(
    conn: psycopg.Connection, trace: Trace, *, offset: int, after: str | None, page_size: int
) -> tuple[list[TraceNode], list[TraceEdge], dict[str, Any] | None]:
    """One page of an answer: its nodes, its edges and the cursor of the next page (None on the last)."""
    graph = trace.nodes
    index = {n.id: i for i, n in enumerate(graph)}
    nodes = list(graph[offset : offset + page_size])
    end = offset + len(nodes)
    edges = [e for e in trace.edges if offset <= max(index[e.src], index[e.dst]) < end]
    if end < len(graph):
        return nodes, edges, {"o": end, "a": None}
    room = page_size - len(nodes)
    if trace.direction == traverse.UPSTREAM or not trace.predictions_total:
        return nodes, edges, None
    if room == 0:
        return nodes, edges, ({"o": len(graph), "a": None} if offset < len(graph) else None)
    rows, more = traverse.predictions_page(
        conn,
        trace.prediction_activities,
        trace.as_of_seq,
        limit=room,
        after=after if offset >= len(graph) else None,
    )
    pnodes, pedges = _prediction_items(trace, rows)
    return nodes + pnodes, edges + pedges, ({"o": len(graph), "a": more} if more else None)


def entry_proofs(conn: psycopg.Connection, seqs: Sequence[int], tree_size: Any) -> query_pb2.EntryProofs:
    """Inclusion proofs for ``seqs``: against the latest checkpoint, or the one the page token pinned."""
    if tree_size is not None and (not isinstance(tree_size, int) or tree_size < 1):
        raise InvalidArgument(expected_found("page_token", "a trace token", "a token without a valid checkpoint"))
    return proofs_for(conn, seqs, tree_size=tree_size).to_pb()


_TERM_TYPES = {
    "iri": query_pb2.RDF_TERM_TYPE_IRI,
    "literal": query_pb2.RDF_TERM_TYPE_LITERAL,
    "bnode": query_pb2.RDF_TERM_TYPE_BLANK_NODE,
}


def _term_pb(v: Any) -> query_pb2.RdfTerm:
    return query_pb2.RdfTerm(type=_TERM_TYPES[v.type], value=v.value, datatype=v.datatype or "", language=v.lang or "")


def sparql_response(result: Any, seq: int) -> query_pb2.SparqlResponse:
    """``query.sparql.SparqlResult`` as the response message."""
    if result.kind == "ask":
        return query_pb2.SparqlResponse(boolean=bool(result.boolean), as_of_seq=seq)
    rows = [
        query_pb2.SparqlRow(
            bindings={var: _term_pb(v) for var, v in zip(result.variables, row, strict=True) if v is not None}
        )
        for row in result.rows
    ]
    bindings = query_pb2.SparqlBindings(variables=list(result.variables), rows=rows, truncated=result.truncated)
    return query_pb2.SparqlResponse(bindings=bindings, as_of_seq=seq)
