"""Rows to PROV-O triples, and the rdflib graph JSON-LD and SPARQL read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC
from typing import Any

import psycopg
from rdflib import Graph, Literal, URIRef

from ledger.core.events import format_time
from ledger.core.provjson import (
    PROV_NS,
)
from ledger.core.vocab import PROVAULT_NS
from query._mapping import PREDICTION_PREFIX

from ._names import (
    _NODE_CLASS,
    _QUALIFIED,
    _RESERVED_EDGE_ATTRIBUTES,
    MAX_TRIPLES,
    NAMESPACES,
    PROVAULT_SEQ,
    RDF_NS,
    RDF_TYPE,
    XSD_DATETIME,
    XSD_INTEGER,
    GraphTooLarge,
    Lit,
    Term,
    Triple,
    _attribute_triples,
    _json_text,
    _literal,
    _safe_iri,
    node_iri,
)
from ._rows import ExportEdge, ExportNode, ExportPrediction, ExportRow, Scope, read_rows

# --- rows to PROV-O triples -------------------------------------------------------------------


def _seq(seq: int) -> Lit:
    return Lit(str(seq), XSD_INTEGER)


def edge_iri(seq: int, ordinal: int) -> str:
    return f"{PROVAULT_NS}edge/{seq}/{ordinal}"


def generation_iri(prediction_id: str, seq: int) -> str:
    local = prediction_id.removeprefix(PREDICTION_PREFIX)
    return _safe_iri(f"{PROVAULT_NS}generation/{seq}/{local}")


def _node_triples(n: ExportNode) -> Iterator[Triple]:
    s = node_iri(n.id)
    if n.node_type in _NODE_CLASS:
        yield (s, RDF_TYPE, _NODE_CLASS[n.node_type])
    for name, value in n.attributes.items():
        yield from _attribute_triples(s, name, value)


def _edge_triples(e: ExportEdge) -> Iterator[Triple]:
    s, o, prop, q = node_iri(e.src), node_iri(e.dst), PROV_NS + e.relation, edge_iri(e.seq, e.ordinal)
    yield (s, prop, o)
    if e.relation in _QUALIFIED:
        qualified, cls, obj = _QUALIFIED[e.relation]
        yield (s, PROV_NS + qualified, q)
        yield (q, RDF_TYPE, PROV_NS + cls)
        yield (q, PROV_NS + obj, o)
    else:  # specializationOf, alternateOf, hadMember: no qualified form in PROV-O
        yield (q, RDF_TYPE, RDF_NS + "Statement")
        yield (q, RDF_NS + "subject", s)
        yield (q, RDF_NS + "predicate", prop)
        yield (q, RDF_NS + "object", o)
    yield (q, PROVAULT_SEQ, _seq(e.seq))
    if e.origin != "prov":
        yield (q, PROVAULT_NS + "origin", Lit(e.origin))
    if e.generation is not None:
        yield (q, PROV_NS + "hadGeneration", edge_iri(e.seq, e.generation))
    if e.usage is not None:
        yield (q, PROV_NS + "hadUsage", edge_iri(e.seq, e.usage))
    for name, value in e.attributes.items():
        if name not in _RESERVED_EDGE_ATTRIBUTES:
            yield from _attribute_triples(q, name, value)


def _prediction_value(value: Any) -> Lit:
    if isinstance(value, (bool, int, float, str)):
        return _literal(value)
    return Lit(_json_text(value))


def _prediction_triples(p: ExportPrediction, first: bool) -> Iterator[Triple]:
    s = node_iri(p.id)
    time = Lit(format_time(p.time.astimezone(UTC)), XSD_DATETIME)
    if first:
        yield (s, RDF_TYPE, _NODE_CLASS["entity"])
        yield (s, RDF_TYPE, PROVAULT_NS + "Prediction")
    yield (s, PROV_NS + "generatedAtTime", time)
    for name, value in (("input", p.input), ("output", p.output)):
        if value is not None:
            yield (s, PROVAULT_NS + name, _prediction_value(value))
    if p.linked:
        a, g = node_iri(p.activity), generation_iri(p.id, p.seq)
        yield (s, PROV_NS + "wasGeneratedBy", a)
        yield (s, PROV_NS + "qualifiedGeneration", g)
        yield (g, RDF_TYPE, PROV_NS + "Generation")
        yield (g, PROV_NS + "activity", a)
        yield (g, PROV_NS + "atTime", time)
        yield (g, PROVAULT_SEQ, _seq(p.seq))


def triples(rows: Iterable[ExportRow]) -> Iterator[Triple]:
    """The PROV-O triples of projection rows, in row order (duplicates possible)."""
    last_prediction: str | None = None
    for row in rows:
        if isinstance(row, ExportNode):
            yield from _node_triples(row)
        elif isinstance(row, ExportEdge):
            yield from _edge_triples(row)
        else:
            yield from _prediction_triples(row, row.id != last_prediction)
            last_prediction = row.id


def rdflib_term(term: Term) -> URIRef | Literal:
    if isinstance(term, Lit):
        return Literal(term.lexical, lang=term.lang, datatype=URIRef(term.datatype) if term.datatype else None)
    return URIRef(term)


def rdflib_triple(t: Triple) -> tuple[URIRef, URIRef, URIRef | Literal]:
    return URIRef(t[0]), URIRef(t[1]), rdflib_term(t[2])


def new_graph() -> Graph:
    g = Graph()
    for prefix, ns in NAMESPACES.items():
        g.bind(prefix, ns, override=True, replace=True)
    return g


def too_large(what: str, limit: int) -> GraphTooLarge:
    return GraphTooLarge(
        f"the graph asked for has more than {limit:,} {what}, too many to build in memory",
        hint="narrow the scope (a subgraph of some nodes, an earlier as-of seq), or export the whole graph "
        "as N-Triples, which streams",
    )


def export_graph(
    conn: psycopg.Connection,
    *,
    node_ids: Sequence[str] | None = None,
    as_of_seq: int | None = None,
    max_triples: int = MAX_TRIPLES,
) -> Graph:
    """The PROV-O view of the graph (or of the subgraph of ``node_ids``) as of ``as_of_seq``."""
    g = new_graph()
    added = 0
    for t in triples(read_rows(conn, Scope.of(node_ids, as_of_seq))):
        added += 1
        if added > max_triples:
            raise too_large("triples", max_triples)
        g.add(rdflib_triple(t))
    return g
