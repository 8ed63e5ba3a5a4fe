"""The vocabulary of exports: namespaces, limits, IRIs and literal terms built from attribute values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from ledger.core.errors import InvalidArgument
from ledger.core.provjson import (
    PREDEFINED_PREFIXES,
    PROV_NS,
    XSD_NS,
)
from ledger.core.vocab import PREFIXES, PROVAULT_NS, SHA256_NS

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
    "prov": PROV_NS,
    "provault": PROVAULT_NS,
    "sha256": SHA256_NS,
    "rdf": RDF_NS,
    "rdfs": RDFS_NS,
    "xsd": XSD_NS,
}
"""Prefixes bound in Turtle / JSON-LD output and predeclared for SPARQL."""
TTL_PREFIXES = tuple(sorted(NAMESPACES.items(), key=lambda kv: -len(kv[1])))

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
    "prov:label": RDFS_LABEL,
    "prov:startTime": PROV_NS + "startedAtTime",
    "prov:endTime": PROV_NS + "endedAtTime",
    "prov:time": PROV_NS + "atTime",
    "prov:role": PROV_NS + "hadRole",
    "prov:location": PROV_NS + "atLocation",
    "prov:plan": PROV_NS + "hadPlan",
    "prov:activity": PROV_NS + "hadActivity",
    "prov:starter": PROV_NS + "hadActivity",
    "prov:ender": PROV_NS + "hadActivity",
}
_TIMES = frozenset({"prov:startTime", "prov:endTime", "prov:time"})
_NODE_REFS = frozenset({"prov:plan", "prov:activity", "prov:starter", "prov:ender"})
"""Edge attributes holding a node id (formal attributes besides the edge's two ends)."""
_STATEMENT_REFS = frozenset({"prov:generation", "prov:usage"})
_RESERVED_EDGE_ATTRIBUTES = frozenset({"provault:seq", "provault:origin"}) | _STATEMENT_REFS
_IRI_FORBIDDEN = re.compile(r'[\x00-\x20<>"{}|^`\\\x7f]')
NT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})
TTL_LOCAL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_-])?")
"""Local parts written as prefixed names in Turtle (a safe subset of PN_LOCAL)."""


class GraphTooLarge(InvalidArgument):
    """The graph asked for is too large to build in memory."""

    reason = "graph_too_large"


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
