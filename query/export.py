"""Exports of the PROV projection: PROV-O (Turtle, JSON-LD, N-Triples) and PROV-JSON.

:func:`export_stream` serializes the graph -- whole, or the subgraph of some
nodes and the edges among them, as the ledger stood at a seq -- into chunks of
bytes for ``QueryService.Export``; :func:`export_graph` gives the PROV-O view
as an :class:`rdflib.Graph` (what JSON-LD and SPARQL read).

Every format reads the same rows (``prov.nodes`` / ``node_versions``,
``prov.edges``, ``prov.predictions``) in one read-only snapshot, through
server-side cursors.  N-Triples and Turtle are written as the rows arrive and
never hold the graph (Turtle groups the consecutive triples of a subject;
both may repeat a triple, which readers merge): N-Triples is the path for
whole large ledgers.  JSON-LD (rdflib's serializer) and PROV-JSON are built in
memory and refuse graphs above :data:`MAX_TRIPLES` triples /
:data:`MAX_STATEMENTS` statements with :class:`GraphTooLarge`.

PROV-O mapping:

* a node is its IRI, ``rdf:type`` ``prov:Entity`` / ``prov:Activity`` /
  ``prov:Agent``; each ``prov:type`` that is a qualified name under a fixed
  prefix (``provault``, ``sha256``, ``prov``, ``xsd``; plain strings such as
  ``"provault:Dataset"`` included) is one more ``rdf:type`` -- PROV-O's way to
  say "subclass" -- other types stay ``prov:type`` literals.
  ``prov:label`` is ``rdfs:label``, ``prov:startTime`` / ``prov:endTime``
  ``prov:startedAtTime`` / ``prov:endedAtTime``; any other attribute is a
  literal under its own (expanded) name, e.g. ``provault:uri``.
* an edge is the unqualified PROV-O property (``prov:used`` ...) plus a
  qualified influence resource ``provault:edge/<seq>/<ordinal>`` (a
  ``prov:Usage`` reached by ``prov:qualifiedUsage``, ...) carrying
  ``provault:seq``, ``prov:atTime``, ``prov:hadRole``, ``prov:hadPlan``,
  ``prov:hadActivity``.  PROV-O has no qualified form for
  ``specializationOf``, ``alternateOf`` and ``hadMember``: there the same IRI
  is an ``rdf:Statement`` reifying the edge.  The IRIs are deterministic, so an
  export has no blank nodes and two exports of one position are equal.
* a prediction is the entity ``provault:prediction/<id>`` (``rdf:type``
  ``provault:Prediction``, ``prov:generatedAtTime``, ``provault:input``,
  ``provault:output``) that ``prov:wasGeneratedBy`` its batch, qualified by
  ``provault:generation/<seq>/<id>`` with its ``provault:seq``.

PROV-JSON rebuilds one document: elements from the nodes, one relation per edge
with id ``provault:edge/<seq>/<ordinal>`` and attribute ``provault:seq``,
predictions as entities with a ``wasGeneratedBy``.  Names outside the fixed
prefixes get generated prefixes ``ns1``, ``ns2``, ...  Attribute values are
as the events wrote them, except where a value needs a prefix the projection
did not keep (a typed literal ``acme:Money``): such a value becomes its plain
lexical string, in PROV-JSON and in RDF alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from rdflib import Graph, Literal, URIRef

from ledger.core.errors import InvalidArgument, StorageUnavailable
from ledger.core.events import format_time
from ledger.core.provjson import _LOCAL  # the exact PROV-N local-name rule the validator applies
from ledger.core.provjson import COMMON_PROV_ATTRIBUTES, ELEMENT_FORMALS, PREDEFINED_PREFIXES, PROV_NS, RELATIONS, XSD_NS
from ledger.core.vocab import PREFIXES, PROVAULT_NS, SHA256_NS

from ._mapping import PREDICTION_PREFIX, RELATION_ENDS

FORMATS = ("turtle", "jsonld", "provjson", "ntriples")
CONTENT_TYPES: Mapping[str, str] = {
    "turtle": "text/turtle",
    "jsonld": "application/ld+json",
    "provjson": "application/json",
    "ntriples": "application/n-triples",
}
MAX_TRIPLES = 2_000_000
"""In-memory RDF graphs (JSON-LD, SPARQL) stop here; N-Triples and Turtle stream without a limit."""
MAX_STATEMENTS = 1_000_000
"""PROV-JSON documents (built in memory) stop at this many nodes + edges + predictions."""
DEFAULT_CHUNK_BYTES = 65536
FETCH_ROWS = 2000
"""Rows per round trip of the server-side cursors."""

RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS_NS = "http://www.w3.org/2000/01/rdf-schema#"
RDF_TYPE = RDF_NS + "type"
RDFS_LABEL = RDFS_NS + "label"
XSD_STRING, XSD_INTEGER, XSD_DOUBLE, XSD_BOOLEAN, XSD_DATETIME = (
    XSD_NS + t for t in ("string", "integer", "double", "boolean", "dateTime")
)
PROVAULT_SEQ = PROVAULT_NS + "seq"
NAMESPACES: Mapping[str, str] = {
    "prov": PROV_NS, "provault": PROVAULT_NS, "sha256": SHA256_NS, "rdf": RDF_NS, "rdfs": RDFS_NS, "xsd": XSD_NS,
}  # fmt: skip
"""Prefixes bound in Turtle / JSON-LD output and predeclared for SPARQL."""
_TTL_PREFIXES = tuple(sorted(NAMESPACES.items(), key=lambda kv: -len(kv[1])))

_FIXED: Mapping[str, str] = {**PREDEFINED_PREFIXES, **PREFIXES}
_FIXED_LONGEST_FIRST = tuple(sorted(_FIXED.items(), key=lambda kv: (-len(kv[1]), kv[0])))
_QNAME_TYPES = frozenset({"prov:QUALIFIED_NAME", "xsd:QName"})
_NODE_CLASS = {"entity": PROV_NS + "Entity", "activity": PROV_NS + "Activity", "agent": PROV_NS + "Agent"}
# Relation -> (qualified property, class of the qualified resource, its property naming the edge's object).
_QUALIFIED: Mapping[str, tuple[str, str, str]] = {
    "used": ("qualifiedUsage", "Usage", "entity"),
    "wasGeneratedBy": ("qualifiedGeneration", "Generation", "activity"),
    "wasInformedBy": ("qualifiedCommunication", "Communication", "activity"),
    "wasStartedBy": ("qualifiedStart", "Start", "entity"),
    "wasEndedBy": ("qualifiedEnd", "End", "entity"),
    "wasInvalidatedBy": ("qualifiedInvalidation", "Invalidation", "activity"),
    "wasDerivedFrom": ("qualifiedDerivation", "Derivation", "entity"),
    "wasAttributedTo": ("qualifiedAttribution", "Attribution", "agent"),
    "wasAssociatedWith": ("qualifiedAssociation", "Association", "agent"),
    "actedOnBehalfOf": ("qualifiedDelegation", "Delegation", "agent"),
    "wasInfluencedBy": ("qualifiedInfluence", "Influence", "influencer"),
}
# Attribute -> PROV-O property, for attributes PROV-O names differently from PROV-JSON.
_PROPERTY = {
    "prov:label": RDFS_LABEL, "prov:startTime": PROV_NS + "startedAtTime", "prov:endTime": PROV_NS + "endedAtTime",
    "prov:time": PROV_NS + "atTime", "prov:role": PROV_NS + "hadRole", "prov:location": PROV_NS + "atLocation",
    "prov:plan": PROV_NS + "hadPlan", "prov:activity": PROV_NS + "hadActivity", "prov:starter": PROV_NS + "hadActivity",
    "prov:ender": PROV_NS + "hadActivity",
}  # fmt: skip
_TIMES = frozenset({"prov:startTime", "prov:endTime", "prov:time"})
_NODE_REFS = frozenset({"prov:plan", "prov:activity", "prov:starter", "prov:ender"})
"""Edge attributes holding a node id (formal attributes besides the edge's two ends)."""
_STATEMENT_REFS = frozenset({"prov:generation", "prov:usage"})
_RESERVED_EDGE_ATTRIBUTES = frozenset({"provault:seq", "provault:origin"}) | _STATEMENT_REFS
_IRI_FORBIDDEN = re.compile(r'[\x00-\x20<>"{}|^`\\\x7f]')
_NT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})
_TTL_LOCAL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_-])?")
"""Local parts written as prefixed names in Turtle (a safe subset of PN_LOCAL)."""


class GraphTooLarge(InvalidArgument):
    """The graph asked for is too large to build in memory."""

    reason = "graph_too_large"


# --- rows (what the projection tables give an export) -------------------------------------


class ExportNode(NamedTuple):
    id: str
    node_type: str | None
    attributes: dict[str, Any]


class ExportEdge(NamedTuple):
    seq: int
    ordinal: int
    relation: str
    src: str
    dst: str
    origin: str
    attributes: dict[str, Any]
    generation: int | None
    """Ordinal of the same entry's generation named by ``prov:generation`` (derivations)."""
    usage: int | None


class ExportPrediction(NamedTuple):
    id: str
    seq: int
    activity: str
    time: datetime
    input: Any
    output: Any
    linked: bool
    """Whether the batch activity is in the export (always, for the whole graph)."""


ExportRow = ExportNode | ExportEdge | ExportPrediction


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """What to export: every node (``node_ids`` None) or those nodes; as of a seq or now."""

    node_ids: tuple[str, ...] | None = None
    as_of_seq: int | None = None

    @classmethod
    def of(cls, node_ids: Sequence[str] | None, as_of_seq: int | None) -> Scope:
        if isinstance(node_ids, str):
            raise InvalidArgument("node_ids: expected a sequence of node ids, found one string")
        if as_of_seq is not None and (isinstance(as_of_seq, bool) or not isinstance(as_of_seq, int) or as_of_seq < 0):
            raise InvalidArgument(f"as_of_seq: expected a seq >= 0, found {as_of_seq!r}")
        return cls(node_ids=None if node_ids is None else tuple(dict.fromkeys(node_ids)), as_of_seq=as_of_seq)


_NODES_NOW = sql.SQL("SELECT n.id, n.node_type, n.attributes FROM prov.nodes n WHERE true")
_NODES_AS_OF = sql.SQL(
    "SELECT n.id,"
    " CASE WHEN n.last_seq <= %(seq)s THEN n.node_type ELSE ("
    "  SELECT v.node_type FROM prov.node_versions v"
    "  WHERE v.node_id = n.id AND v.seq <= %(seq)s AND v.node_type IS NOT NULL ORDER BY v.seq LIMIT 1) END,"
    " CASE WHEN n.last_seq <= %(seq)s THEN n.attributes ELSE ("
    "  SELECT coalesce(jsonb_object_agg(l.key, l.value), '{}') FROM ("
    "   SELECT DISTINCT ON (a.key) a.key, a.value FROM prov.node_versions v, jsonb_each(v.attributes) a"
    "   WHERE v.node_id = n.id AND v.seq <= %(seq)s ORDER BY a.key, v.seq DESC) l) END"
    " FROM prov.nodes n WHERE n.first_seq <= %(seq)s"
)
_EDGES = sql.SQL(
    "SELECT e.seq, e.ordinal, e.relation, e.src, e.dst, e.origin, e.attributes,"
    " CASE WHEN e.attributes ? 'prov:generation' THEN (SELECT min(x.ordinal) FROM prov.edges x"
    "  WHERE x.seq = e.seq AND x.relation = 'wasGeneratedBy' AND x.stmt_id = e.attributes ->> 'prov:generation') END,"
    " CASE WHEN e.attributes ? 'prov:usage' THEN (SELECT min(x.ordinal) FROM prov.edges x"
    "  WHERE x.seq = e.seq AND x.relation = 'used' AND x.stmt_id = e.attributes ->> 'prov:usage') END"
    " FROM prov.edges e WHERE true"
)
_PREDICTIONS = sql.SQL("SELECT p.id, p.seq, p.activity, p.time, p.input, p.output, {} FROM prov.predictions p WHERE true")


def _queries(scope: Scope) -> tuple[tuple[sql.Composed, type], ...]:
    subset, as_of = scope.node_ids is not None, scope.as_of_seq is not None
    nodes = sql.Composed([_NODES_AS_OF if as_of else _NODES_NOW])
    edges = sql.Composed([_EDGES])
    linked = sql.SQL("p.activity = ANY(%(ids)s)") if subset else sql.SQL("true")
    predictions = sql.Composed([_PREDICTIONS.format(linked)])
    if subset:
        nodes += sql.SQL(" AND n.id = ANY(%(ids)s)")
        edges += sql.SQL(" AND e.src = ANY(%(ids)s) AND e.dst = ANY(%(ids)s)")
        predictions += sql.SQL(" AND p.id = ANY(%(ids)s)")
    if as_of:
        edges += sql.SQL(" AND e.seq <= %(seq)s")
        predictions += sql.SQL(" AND p.seq <= %(seq)s")
    return (
        (nodes + sql.SQL(" ORDER BY n.id"), ExportNode),
        (edges + sql.SQL(" ORDER BY e.seq, e.ordinal"), ExportEdge),
        (predictions + sql.SQL(" ORDER BY p.id, p.seq"), ExportPrediction),
    )


def read_rows(conn: psycopg.Connection, scope: Scope, *, statement_timeout_ms: int | None = None) -> Iterator[ExportRow]:
    """Nodes (by id), then edges (by seq, ordinal), then predictions (by id, seq) in ``scope``.

    One read-only REPEATABLE READ snapshot when ``conn`` has no transaction
    open (pass autocommit connections); rows come through server-side cursors
    :data:`FETCH_ROWS` at a time.  Driver errors become StorageUnavailable, except
    the QueryCanceled of ``statement_timeout_ms`` (each fetch's limit), which is
    left to the caller.
    """
    params = {"ids": list(scope.node_ids or ()), "seq": scope.as_of_seq}
    try:
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with conn.transaction():
            if idle:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if statement_timeout_ms is not None:
                conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(max(1, statement_timeout_ms))))
            for n, (query, row) in enumerate(_queries(scope)):
                with conn.cursor(name=f"provault_export_{n}") as cur:
                    cur.itersize = FETCH_ROWS
                    cur.execute(query, params)
                    for r in cur:
                        yield row(*r)
    except psycopg.Error as e:
        if statement_timeout_ms is not None and isinstance(e, psycopg.errors.QueryCanceled):
            raise  # the caller's time limit: it reports the timeout
        diag = getattr(e, "diag", None)
        text = (diag.message_primary if diag else None) or type(e).__name__
        raise StorageUnavailable(
            f"PostgreSQL error during export: {text}",
            hint="check the server and that `provault db migrate` applied the prov schema",
        ) from e


# --- names and terms -------------------------------------------------------------------------


class Lit(NamedTuple):
    """An RDF literal: lexical form, datatype IRI (None: xsd:string), language tag."""

    lexical: str
    datatype: str | None = None
    lang: str | None = None


Term = str | Lit
"""An IRI (str) or a literal."""
Triple = tuple[str, str, Term]


def _safe_iri(iri: str) -> str:
    if _IRI_FORBIDDEN.search(iri) is None:
        return iri
    return _IRI_FORBIDDEN.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), iri)


def node_iri(node_id: str) -> str:
    """The IRI of a canonical node (or attribute) id: the inverse of ``query._mapping.canonical_id``."""
    if node_id.startswith("<") and node_id.endswith(">"):
        return _safe_iri(node_id[1:-1])
    prefix, colon, local = node_id.partition(":")
    ns = _FIXED.get(prefix) if colon else None
    return _safe_iri(ns + local if ns is not None else node_id)


def _qname_iri(text: str) -> str | None:
    """The IRI of a qualified name under a fixed prefix, else None (its binding was not kept)."""
    prefix, colon, local = text.partition(":")
    ns = _FIXED.get(prefix) if colon and local else None
    return None if ns is None else _safe_iri(ns + local)


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _literal(value: Any, datatype: str | None = None) -> Lit:
    """A PROV-JSON attribute value as a literal (``datatype`` for untyped strings)."""
    if isinstance(value, bool):
        return Lit("true" if value else "false", XSD_BOOLEAN)
    if isinstance(value, int):
        return Lit(str(value), XSD_INTEGER)
    if isinstance(value, float):
        return Lit(repr(value), XSD_DOUBLE)
    if isinstance(value, str):
        return Lit(value, datatype)
    if isinstance(value, Mapping) and isinstance(value.get("$"), str):
        if set(value) == {"$", "lang"} and isinstance(value["lang"], str):
            return Lit(value["$"], None, value["lang"])
        if set(value) == {"$", "type"} and isinstance(value["type"], str):
            dt = None if value["type"] in _QNAME_TYPES else _qname_iri(value["type"])  # unexpandable QName: text
            return Lit(value["$"], None if dt == XSD_STRING else dt)
    return Lit(_json_text(value))


def _iri_value(value: Any, *, plain: bool) -> str | None:
    """The IRI a value names: a QName-typed literal, or (``plain``) a string, under a fixed prefix."""
    if isinstance(value, Mapping) and value.get("type") in _QNAME_TYPES and isinstance(value.get("$"), str):
        return _qname_iri(value["$"])
    if plain and isinstance(value, str):
        return _qname_iri(value)
    return None


def _values(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else (value,)


def _attribute_triples(s: str, name: str, value: Any) -> Iterator[Triple]:
    for v in _values(value):
        if v is None:
            continue
        if name == "prov:type":
            iri = _iri_value(v, plain=True)
            yield (s, RDF_TYPE, iri) if iri else (s, PROV_NS + "type", _literal(v))
        elif name in _NODE_REFS and isinstance(v, str):
            yield (s, _PROPERTY[name], node_iri(v))
        elif name in ("prov:role", "prov:location"):
            yield (s, _PROPERTY[name], _iri_value(v, plain=True) or _literal(v))
        else:
            prop = _PROPERTY.get(name) or node_iri(name)
            yield (s, prop, _iri_value(v, plain=False) or _literal(v, XSD_DATETIME if name in _TIMES else None))


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


# --- N-Triples and Turtle, streamed ----------------------------------------------------------------


def nt_term(term: Term) -> str:
    if not isinstance(term, Lit):
        return f"<{term}>"
    text = '"' + term.lexical.translate(_NT_ESCAPES) + '"'
    if term.lang:
        return f"{text}@{term.lang}"
    return f"{text}^^<{term.datatype}>" if term.datatype else text


def nt_line(t: Triple) -> str:
    return f"<{t[0]}> <{t[1]}> {nt_term(t[2])} .\n"


def ntriples_text(source: Iterable[Triple]) -> Iterator[str]:
    """N-Triples, one line per triple (duplicates are kept: readers merge them)."""
    return map(nt_line, source)


def _ttl_name(iri: str) -> str:
    for prefix, ns in _TTL_PREFIXES:
        if iri.startswith(ns):
            local = iri[len(ns) :]
            return f"{prefix}:{local}" if _TTL_LOCAL.fullmatch(local) else f"<{iri}>"
    return f"<{iri}>"


def _ttl_term(term: Term) -> str:
    if not isinstance(term, Lit):
        return _ttl_name(term)
    text = '"' + term.lexical.translate(_NT_ESCAPES) + '"'
    if term.lang:
        return f"{text}@{term.lang}"
    return f"{text}^^{_ttl_name(term.datatype)}" if term.datatype else text


def turtle_text(source: Iterable[Triple]) -> Iterator[str]:
    """Turtle written as the triples come: the prefixes, then consecutive triples of a subject grouped with ``;``.

    Prefixed names are used where the local part is plain (letters, digits,
    ``_ . -``); anything else is written as ``<iri>``, so no escaping rule of
    the Turtle grammar is ever needed.
    """
    for prefix, ns in NAMESPACES.items():
        yield f"@prefix {prefix}: <{ns}> .\n"
    subject: str | None = None
    for s, p, o in source:
        predicate = "a" if p == RDF_TYPE else _ttl_name(p)
        if s == subject:
            yield f" ;\n    {predicate} {_ttl_term(o)}"
        else:
            yield f"{' .' if subject is not None else ''}\n\n{_ttl_name(s)} {predicate} {_ttl_term(o)}"
            subject = s
    if subject is not None:
        yield " .\n"


def _encoded(text: Iterable[str], batch: int = 512) -> Iterator[bytes]:
    pieces: list[str] = []
    for piece in text:
        pieces.append(piece)
        if len(pieces) >= batch:
            yield "".join(pieces).encode()
            pieces.clear()
    if pieces:
        yield "".join(pieces).encode()


def rechunk(pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """Pieces of any size as chunks of exactly ``chunk_bytes`` (the last one shorter)."""
    buf = bytearray()
    for piece in pieces:
        buf += piece
        if len(buf) >= chunk_bytes:
            view = memoryview(buf)
            cut = len(buf) - len(buf) % chunk_bytes
            for i in range(0, cut, chunk_bytes):
                yield bytes(view[i : i + chunk_bytes])
            view.release()
            del buf[:cut]
    if buf:
        yield bytes(buf)


# --- PROV-JSON ---------------------------------------------------------------------------------


class _QNames:
    """IRIs as PROV-JSON qualified names: fixed prefixes first, else generated ``nsN`` ones."""

    def __init__(self) -> None:
        self.declared: dict[str, str] = dict(PREFIXES)
        self._by_ns: dict[str, str] = {ns: p for p, ns in _FIXED.items()}

    def __call__(self, iri: str) -> str:
        for prefix, ns in _FIXED_LONGEST_FIRST:
            if iri.startswith(ns) and _LOCAL.fullmatch(iri[len(ns) :]):
                return f"{prefix}:{iri[len(ns):]}"
        ns, local = _split(iri)
        prefix = self._by_ns.get(ns)
        if prefix is None:
            prefix = f"ns{len(self._by_ns) - len(_FIXED) + 1}"
            self._by_ns[ns] = prefix
            self.declared[prefix] = ns
        return f"{prefix}:{local}"


def _split(iri: str) -> tuple[str, str]:
    cut = max(iri.rfind("#"), iri.rfind("/"))
    if 0 < cut < len(iri) - 1 and _LOCAL.fullmatch(iri[cut + 1 :]):
        return iri[: cut + 1], iri[cut + 1 :]
    for start in range(iri.find(":") + 1, len(iri)):
        if _LOCAL.fullmatch(iri[start:]):
            return iri[:start], iri[start:]
    raise InvalidArgument(f"{iri!r} cannot be written as a PROV-JSON qualified name", hint="export it as RDF instead")


def _prov_value(value: Any) -> Any:
    """A valid PROV-JSON value for ``value`` (None: drop it)."""
    if isinstance(value, list):
        items = [v for v in map(_prov_scalar, value) if v is not None]
        return items or None
    return _prov_scalar(value)


def _prov_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("$"), str):
        if set(value) == {"$", "lang"}:
            return dict(value)
        if set(value) == {"$", "type"} and isinstance(value["type"], str) and _qname_iri(value["type"]):
            if value["type"] not in _QNAME_TYPES or _qname_iri(value["$"]):
                return dict(value)
            return value["$"]
        if set(value) == {"$", "type"}:
            return value["$"]
    return _json_text(value)


class _ProvJson:
    """Builds one PROV-JSON document from projection rows."""

    def __init__(self, max_statements: int) -> None:
        self.q = _QNames()
        self.sections: dict[str, dict[str, dict[str, Any]]] = {}
        self.count = 0
        self.max = max_statements

    def add(self, section: str, sid: str, attrs: dict[str, Any]) -> None:
        self.count += 1
        if self.count > self.max:
            raise too_large("PROV statements", self.max)
        self.sections.setdefault(section, {})[sid] = attrs

    def attributes(self, attrs: Mapping[str, Any], allowed_prov: frozenset[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in attrs.items():
            if name.startswith("prov:") and name not in allowed_prov:
                continue
            v = _prov_value(value)
            if v is not None:
                out[self.q(node_iri(name))] = v
        return out

    def node(self, n: ExportNode) -> None:
        if n.node_type in ELEMENT_FORMALS:
            allowed = COMMON_PROV_ATTRIBUTES | frozenset(ELEMENT_FORMALS[n.node_type])
            self.add(n.node_type, self.q(node_iri(n.id)), self.attributes(n.attributes, allowed))

    def edge(self, e: ExportEdge) -> None:
        src_attr, dst_attr = RELATION_ENDS[e.relation]
        required, optional = RELATIONS[e.relation]
        formal = frozenset(required + optional)
        plain = {k: v for k, v in e.attributes.items() if k not in _NODE_REFS and k not in _RESERVED_EDGE_ATTRIBUTES}
        attrs = {src_attr: self.q(node_iri(e.src)), dst_attr: self.q(node_iri(e.dst))}
        attrs.update(self.attributes(plain, COMMON_PROV_ATTRIBUTES | formal))
        for name in _NODE_REFS & formal:
            if isinstance(e.attributes.get(name), str):
                attrs[name] = self.q(node_iri(e.attributes[name]))
        for name, ordinal in (("prov:generation", e.generation), ("prov:usage", e.usage)):
            if ordinal is not None and name in formal:
                attrs[name] = self.q(edge_iri(e.seq, ordinal))
        attrs["provault:seq"] = e.seq
        if e.origin != "prov":
            attrs["provault:origin"] = e.origin
        self.add(e.relation, self.q(edge_iri(e.seq, e.ordinal)), attrs)

    def prediction(self, p: ExportPrediction) -> None:
        pid = self.q(node_iri(p.id))
        attrs: dict[str, Any] = {"prov:type": {"$": "provault:Prediction", "type": "prov:QUALIFIED_NAME"}}
        for name, value in (("provault:input", p.input), ("provault:output", p.output)):
            if value is not None:
                attrs[name] = value if isinstance(value, (bool, int, float, str)) else _json_text(value)
        entities = self.sections.setdefault("entity", {})
        if pid not in entities:
            self.count += 1
        entities[pid] = {**entities.get(pid, {}), **attrs}  # a later seq's row wins, as for nodes
        if p.linked:
            self.add("wasGeneratedBy", self.q(generation_iri(p.id, p.seq)), {
                "prov:entity": pid, "prov:activity": self.q(node_iri(p.activity)),
                "prov:time": format_time(p.time.astimezone(UTC)), "provault:seq": p.seq,
            })  # fmt: skip

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"prefix": dict(self.q.declared)}
        for section in ("entity", "activity", "agent", *RELATIONS):
            if self.sections.get(section):
                doc[section] = self.sections[section]
        return doc


def prov_json_document(
    conn: psycopg.Connection,
    *,
    node_ids: Sequence[str] | None = None,
    as_of_seq: int | None = None,
    max_statements: int = MAX_STATEMENTS,
) -> dict[str, Any]:
    """The graph (or the subgraph of ``node_ids``) as of ``as_of_seq`` as one PROV-JSON document."""
    return prov_json_from_rows(read_rows(conn, Scope.of(node_ids, as_of_seq)), max_statements=max_statements)


def prov_json_from_rows(rows: Iterable[ExportRow], *, max_statements: int = MAX_STATEMENTS) -> dict[str, Any]:
    """One PROV-JSON document from projection rows (pure)."""
    b = _ProvJson(max_statements)
    for row in rows:
        if isinstance(row, ExportNode):
            b.node(row)
        elif isinstance(row, ExportEdge):
            b.edge(row)
        else:
            b.prediction(row)
    return b.document()


# --- the entry point ----------------------------------------------------------------------------


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
        return rechunk(_encoded(write(triples(read_rows(conn, scope)))), chunk_bytes)
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
    "ExportEdge",
    "ExportNode",
    "ExportPrediction",
    "ExportRow",
    "GraphTooLarge",
    "Lit",
    "Scope",
    "export_graph",
    "export_stream",
    "node_iri",
    "nt_line",
    "ntriples_text",
    "prov_json_document",
    "prov_json_from_rows",
    "read_rows",
    "triples",
    "turtle_text",
]
