"""Exports of the PROV projection: PROV-O (Turtle, JSON-LD, N-Triples) and PROV-JSON.

:func:`export_stream` serializes the whole graph, or the subgraph of some nodes, as the ledger stood at a seq,
into chunks of bytes for ``QueryService.Export``; :func:`export_graph` gives the PROV-O view as an rdflib Graph.
The mapping and the limits are in docs/query.md, "Exports".
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import psycopg

from ledger.core.errors import InvalidArgument

from ._names import (
    CONTENT_TYPES,
    DEFAULT_CHUNK_BYTES,
    FORMATS,
    MAX_STATEMENTS,
    MAX_TRIPLES,
    NAMESPACES,
    RDF_NS,
    XSD_STRING,
    GraphTooLarge,
    Lit,
    Term,
    Triple,
    node_iri,
)
from ._provjson import prov_json_document, prov_json_from_rows
from ._provo import export_graph, rdflib_term, rdflib_triple, too_large, triples
from ._rows import ExportEdge, ExportNode, ExportPrediction, ExportRow, Scope, read_rows
from ._text import encoded, nt_line, ntriples_text, rechunk, turtle_text


def export_stream(
    conn: psycopg.Connection,
    *,
    fmt: str,
    node_ids: Sequence[str] | None = None,
    as_of_seq: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[bytes]:
    """The export document in chunks of ``chunk_bytes`` (the last one shorter).

    ``fmt`` is one of :data:`FORMATS` (media types in :data:`CONTENT_TYPES`).
    Arguments are checked here.  JSON-LD and PROV-JSON are built before this
    returns (GraphTooLarge, StorageUnavailable raise here); N-Triples and
    Turtle read the database as the iterator is consumed, so their storage
    errors raise while iterating.  Close the iterator to end the read early.
    """
    if fmt not in FORMATS:
        raise InvalidArgument(f"format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise InvalidArgument(f"chunk_bytes: expected a positive number of bytes, found {chunk_bytes!r}")
    scope = Scope.of(node_ids, as_of_seq)
    if fmt in ("ntriples", "turtle"):
        write = ntriples_text if fmt == "ntriples" else turtle_text
        return rechunk(encoded(write(triples(read_rows(conn, scope)))), chunk_bytes)
    if fmt == "provjson":
        doc = prov_json_document(conn, node_ids=scope.node_ids, as_of_seq=scope.as_of_seq)
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    else:
        g = export_graph(conn, node_ids=scope.node_ids, as_of_seq=scope.as_of_seq)
        data = g.serialize(format="json-ld", context=dict(NAMESPACES), encoding="utf-8")
    return rechunk((data,), chunk_bytes)


__all__ = [
    "CONTENT_TYPES",
    "FORMATS",
    "MAX_STATEMENTS",
    "MAX_TRIPLES",
    "NAMESPACES",
    "RDF_NS",
    "XSD_STRING",
    "ExportEdge",
    "ExportNode",
    "ExportPrediction",
    "ExportRow",
    "GraphTooLarge",
    "Lit",
    "Scope",
    "Term",
    "Triple",
    "export_graph",
    "export_stream",
    "node_iri",
    "nt_line",
    "ntriples_text",
    "prov_json_document",
    "prov_json_from_rows",
    "rdflib_term",
    "rdflib_triple",
    "read_rows",
    "too_large",
    "triples",
    "turtle_text",
]
